"""``python -m ccs_beat.simulation``: print the comparison table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .model import CCS, CONDITIONS, RULES
from .report import default_processes, explain, format_table, run

DEFAULT_SCENARIOS = 4_000
QUICK_SCENARIOS = 200


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccs_beat.simulation",
        description="Replay seeded scenarios through ccs_beat's guard and the talk's rule.")
    parser.add_argument("--scenarios", type=int, default=DEFAULT_SCENARIOS,
                        help=f"scenarios per condition (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument("--processes", type=int, default=default_processes(),
                        help="processes to spread the scenarios over (default: up to 2)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SCENARIOS} scenarios, for a smoke test")
    parser.add_argument("--explain", type=int, metavar="INDEX",
                        help="print the timeline of scenario INDEX instead of the table")
    parser.add_argument("--condition", default=CONDITIONS[0].name,
                        help="the condition --explain replays (a row's name)")
    parser.add_argument("--rule", choices=RULES, default=CCS, help="the rule --explain uses")
    args = parser.parse_args(argv)
    if args.explain is not None:
        named = {c.name: c for c in CONDITIONS}
        if args.condition not in named:
            parser.error(f"--condition must be one of: {', '.join(named)}")
        print(explain(args.seed, args.explain, named[args.condition], args.rule))
        return 0
    scenarios = QUICK_SCENARIOS if args.quick else args.scenarios
    if scenarios < 1:
        parser.error("--scenarios must be at least 1")
    began = time.perf_counter()
    results = run(CONDITIONS, scenarios, args.seed, processes=args.processes)
    print(format_table(results))
    print(f"({time.perf_counter() - began:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
