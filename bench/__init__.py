"""The benchmark: `python -m bench` and `python -m bench peers` (README "Performance")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def save(results: dict[str, Any], prefix: str, table: str) -> int:
    """Write a run's results as JSON in bench/results/, and print its table."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{prefix}{results['when'].replace(':', '')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\nJSON: {out}")
    return 0
