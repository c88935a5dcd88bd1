"""``make bench``: run B1-B8 on loopback and write docs/benchmarks.md.

``python -m benchmarks [--only B1,B4] [--output PATH]`` (``make bench BENCH=B8``). Every benchmark measures its
baseline in the same run, so the ratios hold on a noisy machine. The whole run takes a
few minutes on two cores; each step is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import api, fanout, ingest, latency, mecm, memory, mp1, scaling
from benchmarks.common import Result, machine
from benchmarks.report import write_report

BENCHMARKS: dict[str, Callable[[], Coroutine[Any, Any, Result]]] = {
    "B1": lambda: ingest.run(count=30_000),
    "B2": latency.run,
    "B3": fanout.run,
    "B4": api.run,
    "B5": memory.run,
    "B6": mp1.run,
    "B7": scaling.run,
    "B8": mecm.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. B1,B4")
    parser.add_argument("--output", default="docs/benchmarks.md", type=Path)
    args = parser.parse_args(argv)
    wanted = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(BENCHMARKS)
    unknown = [k for k in wanted if k not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    results: list[Result] = []
    for key in wanted:
        print(f"{key} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = asyncio.run(BENCHMARKS[key]())
        result.seconds = time.perf_counter() - started
        results.append(result)
        for figure in result.figures:
            ratio = f" ({figure.ratio:.2f} x baseline)" if figure.ratio is not None else ""
            verdict = {True: "met", False: "MISSED", None: "reported"}[figure.met]
            print(
                f"  {figure.name}: {figure.value:,.2f} {figure.unit}{ratio} — {verdict}",
                file=sys.stderr,
                flush=True,
            )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_report(args.output, results, machine(), stamp, partial=len(wanted) < len(BENCHMARKS))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
