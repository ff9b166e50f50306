"""ccs_beat's own cost per burst: one tick of ``SingletonScheduler`` with N due
singleton entries, against a baseline commit, in the same run.

Not a test. Celery's in-memory transport takes the messages and the cluster
read is answered by a canned snapshot of one idle worker, so what is timed is
beat's loop and ccs_beat's path (policy, key, ledger, decision, write-ahead
journal, stamp, report) -- not a broker or workers, which
``adapter_ticks.py`` includes and whose noise (+-20 % between identical runs)
hides a 10 % change. Each tree's package is timed by this script in a child
process with that tree first on ``sys.path``; the trees alternate.

    python benchmarks/tick_cost.py --against 5ef25a6            # N = 1,000; 3 rounds
    python benchmarks/tick_cost.py --against HEAD~3 -n 200 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def child(n: int, repeats: int) -> None:
    """Time the burst with the ccs_beat found first on sys.path; print JSON."""
    from celery import Celery

    import ccs_beat
    from ccs_beat import SingletonScheduler
    try:
        from ccs_beat.snapshot import Snapshot, WorkerView
    except ImportError:   # before the snapshot types had a module of their own
        from ccs_beat.cluster import Snapshot, WorkerView  # type: ignore[attr-defined,no-redef]

    class Canned:
        def read(self, names=None, ids=None, **_):
            return Snapshot(taken_at=time.time(), workers={
                "w1": WorkerView(hostname="w1", tasks=(), now=0.0, peers=None)})

        def close(self) -> None:
            pass

    times, sent = [], 0
    for _ in range(repeats):
        app = Celery("bench", broker="memory://", set_as_current=False)
        app.conf.beat_schedule = {f"e{i}": {"task": "t.x", "schedule": 3600.0, "args": [i],
                                            "options": {"singleton": True}} for i in range(n)}
        with tempfile.TemporaryDirectory() as tmp:
            beat = SingletonScheduler(app=app, schedule_filename=os.path.join(tmp, "s"),
                                      lazy=False)
            coordinator = getattr(beat, "ccs_coordinator", None) or beat.ccs
            coordinator.reader = Canned()
            for entry in beat.schedule.values():
                entry.last_run_at = app.now() - timedelta(hours=2)
            beat._heap = None
            with app.producer_or_acquire() as producer:
                beat.producer = producer
                started = time.perf_counter()
                while beat.tick() == 0:
                    pass
                times.append(time.perf_counter() - started)
            sent = sum(len(v) for v in coordinator.ledger.entries.values())
            beat.close()
    print(json.dumps({"ccs_beat": ccs_beat.__file__, "median_ms": statistics.median(times) * 1e3,
                      "runs_ms": [round(t * 1e3, 1) for t in times], "sent": sent}))


def run_tree(tree: Path, n: int, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--child", "-n", str(n), "--repeats",
                          str(repeats)], cwd=tree, env=env, capture_output=True, text=True,
                         timeout=900, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert str(tree) in result["ccs_beat"], f"{tree} did not import its own ccs_beat: {result}"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REF", help="baseline commit")
    parser.add_argument("-n", type=int, default=1000, help="due entries (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="bursts per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.n, args.repeats)
        return 0
    if not args.against:
        parser.error("--against REF is required")
    with tempfile.TemporaryDirectory(prefix="ccs-tick-cost-") as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.against],
                       cwd=HERE, check=True)
        try:
            medians: dict[str, list[float]] = {"baseline": [], "current": []}
            for i in range(args.rounds):   # alternate: A B, B A, ...
                order = [("baseline", base), ("current", HERE)]
                for name, tree in order if i % 2 == 0 else reversed(order):
                    result = run_tree(tree, args.n, args.repeats)
                    medians[name].append(result["median_ms"])
                    print(f"round {i + 1} {name:8} {result['median_ms']:8.1f} ms "
                          f"{result['runs_ms']} sent {result['sent']}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=HERE,
                           check=False)
    b, c = statistics.median(medians["baseline"]), statistics.median(medians["current"])
    print(f"\nN = {args.n}: baseline {args.against} {b:.1f} ms, current {c:.1f} ms, "
          f"current/baseline {c / b:.3f} ({'within' if c <= 1.1 * b else 'NOT within'} 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
