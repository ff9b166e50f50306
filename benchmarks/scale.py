"""Beat at scale (issue 7): N singleton entries due in the same minute, real workers.

Not a test. Starts W real ``celery worker`` processes (they only answer the
cluster reads: the burst's messages go to a queue nobody consumes) and, in the
same run, handles one burst of N due entries with a plain
``celery.beat.PersistentScheduler`` and with ``ccs_beat.SingletonScheduler``,
each in its own subprocess so that memory is measured separately. Per scheduler:

* decision time: wall time to handle all N due entries (``tick()`` until it
  returns a non-zero delay; the stock ``tick()`` handles one entry per call);
* broadcasts per burst (``ClusterReader.reads`` / ``broadcasts`` while the N
  due entries are handled; goal: 1);
* beat CPU time for the burst (``time.process_time()`` around it);
* RSS after building the schedule (before the burst) and peak RSS
  (``ru_maxrss``) after the burst.

The singleton scheduler's reader is warmed up with one read before timing (a
running beat knows its workers; a fresh one waits the full timeout once).
Goals: one broadcast per burst, beat CPU <= 2x plain, peak memory <= plain + 50 MB.

Second part: the worker guard's cost to a guarded task, i.e. the time from
sending to the body starting for a guarded task (``tests.guarded``) against an
unguarded one (``tests.sleep``), with the guard's own "decided in" times from
the worker logs, printed with D and T. (``benchmarks/guard_overhead.py``
measures the other half: what the guard costs tasks it does *not* guard.)

Run from the repository root::

    python benchmarks/scale.py                  # N = 10,000, 8 workers, Redis
    python benchmarks/scale.py --quick          # N = 1,000, 4 workers, Redis
    python benchmarks/scale.py --broker amqp    # RabbitMQ instead (or: redis,amqp)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/3", 6379),
    "amqp": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}
CHILD_TIMEOUT = 1800.0   # one burst subprocess, seconds
MB = 1024.0              # ru_maxrss and VmRSS are in KiB on Linux


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the child: one burst with one scheduler ------------------------------------------


def child(kind: str, n: int, period: float) -> None:
    """Build N due entries, run one burst, print one JSON line (env from the Cluster)."""
    from celery.beat import PersistentScheduler
    from celery.schedules import schedule

    from ccs_beat import SingletonScheduler
    from tests.integration.proj import app

    singleton = kind == "singleton"
    past = app.now() - timedelta(hours=1)
    entries = {}
    for i in range(n):
        entry = {"task": "tests.sleep", "schedule": schedule(period), "args": [0],
                 "kwargs": {"tag": f"e{i}"}, "last_run_at": past}
        if singleton:   # the plain scheduler would pass it on as a message option
            entry["options"] = {"singleton": True}
        entries[f"e{i}"] = entry
    app.conf.beat_schedule = entries
    cls = SingletonScheduler if singleton else PersistentScheduler
    with tempfile.TemporaryDirectory() as tmp:
        built0 = time.perf_counter()
        sched = cls(app=app, schedule_filename=os.path.join(tmp, "schedule"), max_interval=5)
        try:
            built = time.perf_counter() - built0
            # PersistentScheduler merges beat_schedule into a fresh shelve keeping
            # last_run_at; make sure every entry really is due now.
            assert sum(1 for e in sched.schedule.values() if e.is_due()[0]) >= n
            reader = sched.ccs_coordinator.reader if singleton else None
            warm = reader.read(None).elapsed if reader else 0.0
            reads0 = reader.reads if reader else 0
            casts0 = reader.broadcasts if reader else 0
            sched.producer  # noqa: B018 - connect before timing, for both
            rss_before = rss_kib()
            maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            cpu0, start = time.process_time(), time.perf_counter()
            ticks = 0
            ended = False
            # until tick() says "wait", or every entry was handled once: a burst
            # longer than the entries' 60 s period would otherwise never end
            burst_reads = burst_casts = None
            while ticks < n + 10:
                ticks += 1
                if sched.tick() != 0:
                    ended = True
                    break
                if ticks == n and reader:   # every one of the N due entries handled
                    burst_reads, burst_casts = reader.reads, reader.broadcasts
                if ticks > n:   # tick N+1 still had a due entry (due again already)
                    break
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
            if reader and burst_reads is None:
                burst_reads, burst_casts = reader.reads, reader.broadcasts
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if singleton:
                emitted = sum(len(v) for v in sched.ccs_coordinator.ledger.entries.values())
            else:
                emitted = sum(1 for e in sched.schedule.values() if e.total_run_count)
            out = {"kind": kind, "n": n, "period": period, "build": built, "warm": warm,
                   "wall": wall, "cpu": cpu, "ticks": ticks, "ended": ended, "emitted": emitted,
                   "reads": (burst_reads - reads0) if reader else 0,
                   "broadcasts": (burst_casts - casts0) if reader else 0,
                   "rss_before": rss_before, "maxrss_before": maxrss_before, "peak": peak}
        finally:
            sched.close()
    print("RESULT " + json.dumps(out), flush=True)


def run_child(cluster, kind: str, n: int, period: float, unconsumed: str) -> dict:
    env = cluster.env(CCS_TEST_SETTINGS=json.dumps({"task_default_queue": unconsumed}))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind,
                           "-n", str(n), "--period", str(period)], env=env,
                          cwd=str(cluster.dir), capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} burst failed ({proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def purge(cluster, queue: str) -> None:
    from kombu import Queue
    try:
        with cluster.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2)
            Queue(queue, channel=conn.default_channel).delete()
    except Exception as exc:  # noqa: BLE001 - best effort
        print(f"# could not delete {queue}: {exc!r}")


# -- the guard: send -> body, guarded versus not -----------------------------------------


def guard_part(cluster, rounds: int) -> list[tuple[str, list[float]]]:
    """Send ``rounds`` unguarded and guarded tasks (interleaved, one at a time,
    distinct arguments so no guarded task has a peer); latency send -> body."""
    from tests.integration.harness import wait_until

    lat: dict[str, list[float]] = {"tests.sleep": [], "first": [], "later": []}
    seen: set[str | None] = set()   # workers whose process already read the cluster
    for r in range(rounds):
        for name in ("tests.sleep", "tests.guarded"):
            tag = f"g{r}-{name}"
            sent = time.time()
            cluster.app.send_task(name, args=[0], kwargs={"tag": tag}, queue=cluster.queue)
            run = wait_until(lambda t=tag: cluster.runs(t), 30, interval=0.02,
                             what=f"{name} body")[0]
            if name == "tests.sleep":
                lat[name].append(run.start - sent)
            else:
                lat["later" if run.worker in seen else "first"].append(run.start - sent)
                seen.add(run.worker)
    decided = [float(m) for proc in cluster.workers.values()
               for m in re.findall(r"ccs_beat guard: running .*?decided in ([0-9.]+)s",
                                   proc.text())]
    return [("unguarded (tests.sleep): send -> body", lat["tests.sleep"]),
            ("guarded, first on its worker (reader new): send -> body", lat["first"]),
            ("guarded, later on that worker (reader warm): send -> body", lat["later"]),
            ("guarded, all: send -> body", lat["first"] + lat["later"]),
            ("guard's own 'decided in' (D + read), worker logs", decided)]


# -- report -------------------------------------------------------------------------------


def report(broker: str, workers: int, plain: dict, single: dict) -> list[str]:
    n = plain["n"]
    print(f"\n{broker}, {workers} workers, N = {n:,} entries due at once, period "
          f"{plain['period']:g} s "
          f"(singleton reader warmed up with one read first: {single['warm'] * 1000:.0f} ms)")
    print("| scheduler | decision time (s) | ticks | emitted | reads / broadcasts "
          "| CPU (s) | RSS before (MB) | peak RSS (MB) | schedule build (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in (("PersistentScheduler", plain), ("SingletonScheduler", single)):
        rb = f"{r['reads']} / {r['broadcasts']}" if r["kind"] == "singleton" else "-"
        mark = "" if r["ended"] else "*"
        print(f"| {label} | {r['wall']:.2f} | {r['ticks']:,}{mark} | {r['emitted']:,} | {rb} "
              f"| {r['cpu']:.2f} | {r['rss_before'] / MB:.1f} | {r['peak'] / MB:.1f} "
              f"| {r['build']:.2f} |")
    if not (plain["ended"] and single["ended"]):
        print("* stopped after N ticks: tick() had not yet returned a delay (the burst "
              "outlasted the entries' period, so some were due again)")
    extra_mb = (single["peak"] - plain["peak"]) / MB
    print(f"ratios singleton / plain: decision time {single['wall'] / plain['wall']:.2f}x, "
          f"CPU {single['cpu'] / plain['cpu']:.2f}x, peak RSS "
          f"{single['peak'] / plain['peak']:.2f}x ({extra_mb:+.1f} MB)")
    goals = [
        ("one broadcast per burst", single["broadcasts"] == 1,
         f"{single['broadcasts']} broadcasts, {single['reads']} reads"),
        ("beat CPU <= 2x plain", single["cpu"] <= 2 * plain["cpu"],
         f"{single['cpu'] / plain['cpu']:.2f}x"),
        ("peak memory <= plain + 50 MB", extra_mb <= 50, f"{extra_mb:+.1f} MB"),
        ("every entry emitted once", plain["emitted"] == n == single["emitted"],
         f"{plain['emitted']:,} / {single['emitted']:,}"),
    ]
    failed = []
    for label, ok, detail in goals:
        print(f"  goal {label}: {'HOLDS' if ok else 'FAILS'} ({detail})")
        if not ok:
            failed.append(f"{broker}: {label}")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1,000, 4 workers")
    parser.add_argument("--broker", default="redis", help="redis, amqp or redis,amqp")
    parser.add_argument("-n", type=int, default=None, help="entries (overrides the default)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--guard-rounds", type=int, default=None)
    parser.add_argument("--period", type=float, default=3600.0,
                        help="the entries' period in seconds (default: hourly jobs)")
    parser.add_argument("--child", choices=["plain", "singleton"], help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(opts.child, opts.n, opts.period)
        return 0
    n = opts.n or (1_000 if opts.quick else 10_000)
    workers = opts.workers or (4 if opts.quick else 8)
    rounds = opts.guard_rounds or (8 if opts.quick else 16)

    import celery
    import kombu

    from ccs_beat.policy import load_settings
    from tests.conftest import reachable
    from tests.integration.harness import Cluster

    print(f"python {platform.python_version()}, celery {celery.__version__}, "
          f"kombu {kombu.__version__}, {os.cpu_count()} CPUs")
    failed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ccs-scale-") as tmp:
        for broker in opts.broker.split(","):
            url, port = BROKERS[broker]
            if not reachable(("127.0.0.1", port)):
                print(f"# {broker}: not reachable on 127.0.0.1:{port}, skipped")
                continue
            cluster = Cluster(url, Path(tmp))
            unconsumed = cluster.queue + "-unconsumed"
            try:
                hosts = [cluster.hostname(f"w{i}") for i in range(workers)]
                for i in range(workers):
                    cluster.start_worker(f"w{i}", concurrency=1, wait=False)
                cluster.wait_for_workers(hosts, timeout=120)
                plain = run_child(cluster, "plain", n, opts.period, unconsumed)
                purge(cluster, unconsumed)
                single = run_child(cluster, "singleton", n, opts.period, unconsumed)
                purge(cluster, unconsumed)
                failed += report(broker, workers, plain, single)

                settings = load_settings(cluster.app.conf)
                print(f"\nguard overhead on {broker}, {workers} workers: D = "
                      f"{settings.guard_delay:g} s, T = {settings.guard_timeout:g} s, "
                      f"margin {settings.guard_margin:g} s; {rounds} tasks each, one at a time")
                print("| case | n | median (ms) | min (ms) | max (ms) |")
                print("| --- | ---: | ---: | ---: | ---: |")
                rows = guard_part(cluster, rounds)
                for label, values in rows:
                    if values:
                        print(f"| {label} | {len(values)} | "
                              f"{statistics.median(values) * 1000:.0f} | "
                              f"{min(values) * 1000:.0f} | {max(values) * 1000:.0f} |")
                for label, values in rows[1:3]:
                    if not (rows[0][1] and values):
                        continue
                    extra = statistics.median(values) - statistics.median(rows[0][1])
                    print(f"guard cost, {label.split(':')[0]} (median - unguarded): "
                          f"{extra * 1000:.0f} ms "
                          f"= D {settings.guard_delay * 1000:.0f} ms + "
                          f"{(extra - settings.guard_delay) * 1000:.0f} ms for the read")
                print("what the guard costs tasks it does not guard: "
                      "python benchmarks/guard_overhead.py")
            finally:
                cluster.close()
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s; goals "
          + ("all hold" if not failed else "FAIL: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
