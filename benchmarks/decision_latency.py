"""How long one beat decision takes: ccs_beat's read versus stock inspect.

Not a test. Starts W = 1, 4, 8 real ``celery worker`` processes on RabbitMQ and
on Redis and measures, in the same run:

* ccs_beat: one :class:`~ccs_beat.cluster.ClusterReader` read (one broadcast of
  ``ccs_snapshot``, early return once every known worker answered);
* the baseline from the "Celery meets Singleton" talk: ``inspect().active()``,
  ``.reserved()`` and ``.scheduled()`` at ``timeout=1.0``, one decision;
* a burst: 1,000 singleton entries due at once, decided by an in-process
  ``SingletonScheduler`` (broadcasts counted), against a plain
  ``PersistentScheduler`` with the same entries.

Run from the repository root::

    python benchmarks/decision_latency.py            # full: W = 1, 4, 8; 1,000 entries
    python benchmarks/decision_latency.py --quick    # W = 1, 4; 200 entries
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import celery  # noqa: E402
import kombu  # noqa: E402
from celery.beat import PersistentScheduler  # noqa: E402

from ccs_beat import SingletonScheduler  # noqa: E402
from ccs_beat.cluster import ClusterReader  # noqa: E402
from tests.integration.harness import Cluster  # noqa: E402

BROKERS = {
    "amqp": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
    "redis": ("redis://127.0.0.1:6379/3", 6379),
}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_reads(cluster: Cluster, hosts: list[str], n: int) -> dict:
    reader = ClusterReader(cluster.app, timeout=1.0)
    try:
        first = reader.read()
        reader.read()
        times, incomplete = [], 0
        for _ in range(n):
            snap = reader.read()
            times.append(snap.elapsed)
            if set(snap.workers) != set(hosts) or snap.missing:
                incomplete += 1
        return {"first": first.elapsed, "median": statistics.median(times),
                "p90": pct(times, 0.9), "incomplete": incomplete,
                "broadcasts_per_read": (reader.broadcasts - 2) / n}
    finally:
        reader.close()


def measure_stock(cluster: Cluster, reps: int) -> float:
    times = []
    for _ in range(reps):
        inspect = cluster.app.control.inspect(timeout=1.0)
        start = time.perf_counter()
        inspect.active()
        inspect.reserved()
        inspect.scheduled()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def burst(cluster: Cluster, scheduler_cls: type, entries: int) -> dict:
    app = cluster.app
    due = app.now() - timedelta(hours=2)          # every entry is due at the first tick
    app.conf.beat_schedule = {
        f"e{i}": {"task": "tests.sleep", "schedule": 3600.0, "args": [0],
                  "kwargs": {"tag": f"e{i}"}, "last_run_at": due}
        for i in range(entries)}
    with tempfile.TemporaryDirectory() as tmp:
        sched = scheduler_cls(app=app, schedule_filename=os.path.join(tmp, "schedule"))
        try:
            reader = getattr(getattr(sched, "ccs_coordinator", None), "reader", None)
            if reader:
                # a running beat already knows its workers; a fresh one pays
                # one full timeout on its first read (reported separately above)
                reader.read()
            before = reader.broadcasts if reader else 0
            # Emitting, not reading, dominates a burst; start both from a
            # connected producer so the first connect is not counted.
            sched.producer  # noqa: B018
            cpu0, start = time.process_time(), time.perf_counter()
            ticks = 0
            while ticks < entries * 3:
                ticks += 1
                if sched.tick() > 0:
                    break
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
            emitted = (sum(len(v) for v in sched.ccs_coordinator.ledger.entries.values())
                       if reader else sum(1 for e in sched.schedule.values()
                                          if e.total_run_count and e.name.startswith("e")))
            return {"seconds": elapsed, "cpu": cpu, "ticks": ticks, "emitted": emitted,
                    "broadcasts": (reader.broadcasts - before) if reader else 0}
        finally:
            sched.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--brokers", default="amqp,redis")
    opts = parser.parse_args()
    counts = [1, 4] if opts.quick else [1, 4, 8]
    reads = 10 if opts.quick else 40
    entries = 200 if opts.quick else 1000

    print(f"python {platform.python_version()}, celery {celery.__version__}, "
          f"kombu {kombu.__version__}, {os.cpu_count()} CPUs")
    rows, bursts = [], []
    tmp = Path(tempfile.mkdtemp(prefix="ccs-bench-"))
    for name in opts.brokers.split(","):
        url, port = BROKERS[name]
        if not reachable(port):
            print(f"# {name}: not reachable on 127.0.0.1:{port}, skipped")
            continue
        for w in counts:
            cluster = Cluster(url, tmp)
            try:
                hosts = [cluster.hostname(f"w{i}") for i in range(w)]
                for i in range(w):
                    cluster.start_worker(f"w{i}", concurrency=1, wait=False)
                cluster.wait_for_workers(hosts, timeout=120)
                ccs = measure_reads(cluster, hosts, reads)
                stock = measure_stock(cluster, 3)
                rows.append((name, w, ccs, stock))
                print(f"{name} W={w}: ccs median {ccs['median'] * 1000:.1f} ms "
                      f"(p90 {ccs['p90'] * 1000:.1f}, first {ccs['first'] * 1000:.0f}), "
                      f"stock {stock * 1000:.0f} ms, x{stock / ccs['median']:.0f}", flush=True)
                if w == counts[-1]:
                    plain = burst(cluster, PersistentScheduler, entries)
                    single = burst(cluster, SingletonScheduler, entries)
                    bursts.append((name, w, plain, single))
            finally:
                cluster.close()

    print("\n| broker | workers | ccs_beat median (ms) | p90 (ms) | first read (ms) "
          "| stock inspect x3 (ms) | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, w, ccs, stock in rows:
        note = f" ({ccs['incomplete']} incomplete)" if ccs["incomplete"] else ""
        print(f"| {name} | {w} | {ccs['median'] * 1000:.1f}{note} | {ccs['p90'] * 1000:.1f} "
              f"| {ccs['first'] * 1000:.0f} | {stock * 1000:.0f} "
              f"| {stock / ccs['median']:.0f}x |")
    print("\n| broker | workers | entries | plain beat burst (s) | ccs_beat burst (s) "
          "| ratio | CPU plain / ccs (s) | ccs broadcasts | emitted (plain / ccs) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, w, plain, single in bursts:
        print(f"| {name} | {w} | {entries} | {plain['seconds']:.2f} | {single['seconds']:.2f} "
              f"| {single['seconds'] / plain['seconds']:.2f} "
              f"| {plain['cpu']:.2f} / {single['cpu']:.2f} | {single['broadcasts']} "
              f"| {plain['emitted']} / {single['emitted']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
