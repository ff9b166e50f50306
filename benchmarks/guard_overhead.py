"""What the worker guard costs tasks it does not guard.

Not a test. A ``SingletonTask`` that is not declared singleton and carries no
beat stamp must cost nothing measurable, and so must the publish-side stamp
hook for plain tasks. This runs each task through Celery's own tracer (the
code a pool process runs for every message, minus the pool) and through
Celery's publish path on the in-memory transport, and prints the per-call
times against a plain ``celery.Task`` measured in the same run.

Run from the repository root::

    python benchmarks/guard_overhead.py            # 200,000 calls per case
    python benchmarks/guard_overhead.py --quick    # 20,000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import celery  # noqa: E402
from celery import Celery, signals  # noqa: E402
from celery.app.trace import build_tracer  # noqa: E402

from ccs_beat import SingletonTask  # noqa: E402
from ccs_beat import task as task_module  # noqa: E402
from ccs_beat.control import STAMP_HEADER  # noqa: E402
from ccs_beat.policy import load_settings  # noqa: E402

ROUNDS = 5


def make_app() -> Celery:
    app = Celery("bench_guard", broker="memory://", set_as_current=True)
    app.conf.task_ignore_result = True

    @app.task(name="bench.plain")
    def plain(n: int) -> int:
        return n

    @app.task(name="bench.singleton_class", base=SingletonTask)
    def singleton_class(n: int) -> int:
        return n

    app.finalize()
    return app


def per_call_trace(app: Celery, cases: list[tuple[str, dict]], calls: int) -> list[float]:
    """Seconds per message through Celery's tracer for each (task name, headers)
    case: best of ROUNDS, the cases interleaved so drift hits them alike."""
    tracers = [(build_tracer(name, app.tasks[name], app=app, eager=False),
                {"id": "x", "hostname": "bench@host", "delivery_info": {}, **headers})
               for name, headers in cases]
    best = [float("inf")] * len(cases)
    for _ in range(ROUNDS):
        for n, (tracer, request) in enumerate(tracers):
            start = time.perf_counter()
            for i in range(calls):
                tracer(uuid.uuid4().hex, (i,), {}, request)
            best[n] = min(best[n], (time.perf_counter() - start) / calls)
    return best


def per_call_publish(app: Celery, name: str, calls: int) -> float:
    """Seconds per ``send_task`` on the in-memory transport (best of ROUNDS)."""
    best = []
    with app.producer_or_acquire() as producer:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for i in range(calls):
                app.send_task(name, args=(i,), producer=producer, queue="bench-guard")
            best.append((time.perf_counter() - start) / calls)
            with app.connection_for_write() as conn:
                conn.SimpleQueue("bench-guard").clear()
    return min(best)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 calls per case")
    args = parser.parse_args(argv)
    calls = 20_000 if args.quick else 200_000
    app = make_app()
    settings = load_settings(app.conf)
    print(f"Python {platform.python_version()}, Celery {celery.__version__}; "
          f"{calls:,} calls per case, best of {ROUNDS}; guard D={settings.guard_delay:g}s "
          f"T={settings.guard_timeout:g}s (paid only by guarded tasks)\n")

    beat_stamp = {STAMP_HEADER: {"v": 1, "sent_at": time.time()}}
    trace = per_call_trace(app, [("bench.plain", {}), ("bench.singleton_class", {}),
                                 ("bench.singleton_class", beat_stamp), ("bench.plain", {})],
                           calls)
    rows = [
        ("trace", "plain celery.Task", trace[0]),
        ("trace", "SingletonTask, not guarded", trace[1]),
        ("trace", "SingletonTask, clock-only stamp", trace[2]),
        ("trace", "plain celery.Task again (noise floor)", trace[3]),
    ]
    publish_calls = max(calls // 10, 2_000)
    signals.before_task_publish.disconnect(task_module._stamp_on_publish)
    without_hook = per_call_publish(app, "bench.plain", publish_calls)
    again = per_call_publish(app, "bench.plain", publish_calls)
    signals.before_task_publish.connect(task_module._stamp_on_publish, weak=False)
    rows += [
        ("publish", "plain task, without ccs_beat's hook", without_hook),
        ("publish", "the same again (noise floor)", again),
        ("publish", "plain task, with the hook", per_call_publish(app, "bench.plain",
                                                                  publish_calls)),
        ("publish", "SingletonTask, not declared",
         per_call_publish(app, "bench.singleton_class", publish_calls)),
    ]
    base = {kind: next(t for k, _, t in rows if k == kind) for kind in ("trace", "publish")}
    print("| path | case | per call (us) | vs plain |")
    print("| --- | --- | ---: | ---: |")
    for kind, label, seconds in rows:
        print(f"| {kind} | {label} | {seconds * 1e6:.2f} | {seconds / base[kind]:.3f} |")
    overheads = [t / base[k] for k, _, t in rows]
    print(f"\nlargest ratio {max(overheads):.3f}; median {statistics.median(overheads):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
