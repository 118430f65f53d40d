"""The benchmark: `python -m bench` (README "Performance")."""
