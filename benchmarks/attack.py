"""Every attack of issue 17 against one real ``lj run --headless``: survived, and the frame gap.

Starts the engine as ``tests/test_adversary.py`` does (64 px, built-in generator, OSC, OSCQuery,
/health, in a temporary show folder with a sentinel folder beside it), runs each attack of
``tests/adversary_support.ATTACKS`` and the start-up with a nested bindings file, and prints a
table: the attack, whether the show survived (process alive, frames, /health, memory, no file
outside the show folder changed), and the longest time without a frame from the attack's first
packet until frames came again, as milliseconds and as a ratio to the median frame time measured
just before that attack in the same run. An attack that gets through leaves the engine killed
and the next one starts a fresh engine (so one hang does not hide the rest).

    PYTHONPATH=. python benchmarks/attack.py [--only SUBSTRING] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from adversary_support import ATTACKS, Engine, ShowFolder, run_attack, startup_with_nested_bindings  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run only the attacks whose name contains this")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lj-attack-") as tmp:
        engine = Engine(ShowFolder(Path(tmp) / "main").make())
        try:
            for name, attack in ATTACKS.items():
                if args.only and args.only not in name:
                    continue
                t = time.monotonic()
                r = run_attack(engine, name, attack)
                rows.append(dict(attack=name, survived=r.survived, gap_ms=r.gap_s * 1e3,
                                 median_ms=r.median_s * 1e3, ratio=r.gap_ratio,
                                 problems=r.problems, wall_s=time.monotonic() - t))
                print_row(rows[-1])
        finally:
            engine.stop()
        if not args.only or args.only in "nested bindings at start-up":
            problems = startup_with_nested_bindings(Path(tmp) / "bindings")
            rows.append(dict(attack="nested bindings at start-up", survived=not problems,
                             gap_ms=float("nan"), median_ms=float("nan"), ratio=float("nan"),
                             problems=problems, wall_s=float("nan")))
            print_row(rows[-1])
    survived = sum(r["survived"] for r in rows)
    print(f"\n{survived} of {len(rows)} attacks survived")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0 if survived == len(rows) else 1


def print_row(r: dict) -> None:
    if not getattr(print_row, "headed", False):
        print(f"| {'attack':42s} | survived | longest frame gap (ms) | x median frame |")
        print(f"|{'-' * 44}|----------|------------------------|----------------|")
        print_row.headed = True
    gap = "never recovered" if r["gap_ms"] == float("inf") else f"{r['gap_ms']:.1f}"
    ratio = "-" if r["ratio"] in (float("inf"),) or r["ratio"] != r["ratio"] else f"{r['ratio']:.0f}"
    print(f"| {r['attack']:42s} | {'yes' if r['survived'] else 'NO':8s} | {gap:>22s} | {ratio:>14s} |",
          flush=True)
    for p in r["problems"]:
        print(f"|   {p[:150]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
