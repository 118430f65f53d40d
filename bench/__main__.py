"""`python -m bench`: the whole benchmark in one run, bounded (about 13 minutes), on
127.0.0.1 only. Prints a table with each target and writes JSON to bench/results/."""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import apiserver, http, inprocess, instructions, peers, save


def main() -> int:
    if sys.argv[1:2] == ["peers"]:  # the engines users would otherwise install (bench/peers)
        return peers.main(sys.argv[2:])
    quick = "--quick" in sys.argv  # a smoke run: smaller counts, shorter loads
    work = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    results: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    print("engine time ...", flush=True)
    results["engine"] = inprocess.engine_time(1000 if quick else 5000)
    print("cache memory ...", flush=True)
    results["cache"] = inprocess.cache_memory(1000 if quick else 10_000)
    print("offline audit ...", flush=True)
    results["audit"] = inprocess.audit_throughput(1000 if quick else 10_000)
    print("HTTP, ours and the bare baseline ...", flush=True)
    results["http"] = http.run(
        work,
        seconds=1 if quick else 2,
        rounds=1 if quick else 3,
        concurrencies=(8,) if quick else (1, 8, 64),
    )
    if instructions.available() and not quick:
        print("instructions per request (callgrind) ...", flush=True)
        results["instructions"] = instructions.run(work / "instructions")
    print("through the API server ...", flush=True)
    results["apiserver"] = apiserver.run(
        work / "apiserver", rounds=20 if quick else 100, turns=1 if quick else 3
    )
    return save(results, "", table(results))


def table(r: dict[str, Any]) -> str:
    rows = [("measure", "value", "target", "met")]
    for name, e in r["engine"].items():
        rows.append(
            (
                f"engine {name} p50 / p99",
                f"{e['p50_ms']:.3f} / {e['p99_ms']:.3f} ms",
                "p99 <= 0.5 ms",
                "yes" if e["p99_ms"] <= 0.5 else "no",
            )
        )
    for key, servers in r["http"].items():
        if key.startswith("_"):
            continue
        ours, base = servers["ours"], servers["baseline"]
        ratio = ours["rps"] / base["rps"]
        target = ">= 0.7x at c=8" if key.endswith("c=8") else ""
        met = ("yes" if ratio >= 0.7 else "no") if target else ""
        rows.append(
            (
                f"HTTP {key} req/s ours / baseline",
                f"{ours['rps']:.0f} / {base['rps']:.0f} = {ratio:.2f}x "
                f"(p50 {ours['p50_ms']:.2f} / {base['p50_ms']:.2f} ms, "
                f"p99 {ours['p99_ms']:.2f} / {base['p99_ms']:.2f} ms)",
                target,
                met,
            )
        )
    for key, counts in r.get("instructions", {}).items():
        rows.append(
            (
                f"CPU instructions per request {key}, baseline / ours",
                f"{counts['baseline'] / 1000:.0f}k / {counts['ours'] / 1000:.0f}k = "
                f"{counts['baseline_over_ours']:.2f}x (callgrind, one at a time)",
                "",
                "",
            )
        )
    none = r["apiserver"]["no webhook"]
    for name in (
        "stateful-guard webhooks",
        "bare webhook (baseline endpoint)",
        "bare webhook answering our patch",
        "ValidatingAdmissionPolicy",
    ):
        other = r["apiserver"][name]
        for op in ("create", "delete"):
            added = other[f"{op}_p50_ms"] - none[f"{op}_p50_ms"]
            ratio = other[f"{op}_p50_ms"] / none[f"{op}_p50_ms"]
            target = "<= +2 ms p50" if name.startswith("stateful") else ""
            met = ("yes" if added <= 2 else "no") if target else ""
            rows.append(
                (
                    f"API server {op}, {name} vs none p50",
                    f"{other[f'{op}_p50_ms']:.2f} vs {none[f'{op}_p50_ms']:.2f} ms "
                    f"({added:+.2f} ms, {ratio:.2f}x)",
                    target,
                    met,
                )
            )
    calls = {
        name: r["apiserver"][name].get("webhooks", {})
        for name in (
            "stateful-guard webhooks",
            "bare webhook (baseline endpoint)",
            "bare webhook answering our patch",
        )
    }
    ours_calls, bare_calls, patching_calls = calls.values()
    for key in sorted(ours_calls.keys() & bare_calls.keys()):
        ours, bare = ours_calls[key]["ms_per_call"], bare_calls[key]["ms_per_call"]
        value = f"{ours:.2f} / {bare:.2f} ms ({ours - bare:+.2f} ms)"
        if key.startswith("mutate") and key in patching_calls:
            patching = patching_calls[key]["ms_per_call"]
            value += f"; bare answering our patch {patching:.2f} ms"
        rows.append(
            (
                f"API server's time per call to {key}, ours / bare",
                f"{value}, {ours_calls[key]['calls_per_request']:.1f} calls per request",
                "",
                "",
            )
        )
    c = r["cache"]
    rows.append(
        (
            f"cache bytes per object ({c['objects']} sets and claims)",
            f"{c['bytes_per_object']:.0f} B",
            "<= 1024 B",
            "yes" if c["bytes_per_object"] <= 1024 else "no",
        )
    )
    a = r["audit"]
    for fmt in ("yaml", "json"):
        value = a[f"{fmt}_objects_per_second"]
        rows.append(
            (
                f"offline audit, {a['objects']} objects from {fmt.upper()}",
                f"{value:.0f} objects/s (judging alone {a[f'{fmt}_judge_objects_per_second']:.0f})",
                ">= 5000/s",
                "yes" if value >= 5000 else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    setup = r["http"]["_setup"]
    generator = (
        "wrk"
        if setup["load generator"]["wrk"]
        else "a Python aiohttp client (install wrk: it flatters the ratios)"
    )
    pinned = "pinned to separate cores" if setup["pinned"]["yes"] else "not pinned"
    return "\n".join(
        [
            *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows),
            f"\nHTTP load generator: {generator}; servers and load {pinned}; medians of rounds.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
