"""Benchmark: the whole bad-input catalogue (tests/hostile_cases.py) through the real CLI, a
process per case; prints `N cases, N clear, 0 tracebacks, 0 lost` and the slowest cases.

python tests/benchmarks/bench_bad_input.py [--workers 2] [--verbose]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.hostile_cases import CASES, run_all


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="every case's answer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="comfyfleet-bad-input-") as root:
        started = time.perf_counter()
        outcomes = run_all(CASES, Path(root), args.workers)
        took = time.perf_counter() - started
    by_category: collections.Counter[str] = collections.Counter()
    for outcome in outcomes:
        by_category[outcome.case.category] += 1
        if args.verbose or not outcome.clear or outcome.lost:
            mark = "clear" if outcome.clear and not outcome.lost else "NOT CLEAR"
            print(f"[{mark}] {outcome.case.category}: {outcome.case.name}")
            print("   ", (outcome.err or outcome.out).strip().replace("\n", "\n    ")[:400])
    for category, count in sorted(by_category.items()):
        print(f"  {category}: {count} cases")
    clear = sum(o.clear for o in outcomes)
    tracebacks = sum(o.traceback for o in outcomes)
    lost = sum(bool(o.lost) for o in outcomes)
    print(f"{len(outcomes)} cases, {clear} clear, {tracebacks} tracebacks, {lost} lost")
    print(f"({took:.1f} s on {args.workers} worker(s))")
    return 0 if clear == len(outcomes) and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
