"""One beat tick (a burst) with N singleton entries due, for the redbeat and Django
adapters, against the stock scheduler with the same entries in the same run.

Not a test. Uses real Redis (broker and redbeat store), real PostgreSQL (for
django-celery-beat's tables) and 4 real ``celery worker`` processes, so the
cluster read is answered by real workers. Per scheduler it prints the tick time
(median of the repeats), the cluster reads the tick made, and the ratio to the
stock scheduler's tick: what the singleton check costs on top of sending.

    python benchmarks/adapter_ticks.py            # N = 200 and 1,000; 3 repeats
    python benchmarks/adapter_ticks.py --quick    # N = 200; 2 repeats
    python benchmarks/adapter_ticks.py --json     # one JSON object on stdout (the
                                                  # table goes to stderr)

``benchmarks/compare.py`` runs this script on two commits and compares them.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REDIS = "redis://127.0.0.1:6379/3"
REDBEAT = "redis://127.0.0.1:6379/6"

# where the human table goes: stdout, or stderr under --json (stdout is the JSON)
OUT = sys.stdout


def say(*args) -> None:
    print(*args, file=OUT, flush=True)


def row(adapter: str, stock: str, singleton: str, n: int, plain_runs: list[float],
        ccs_runs: list[float], reads: int) -> dict:
    """One result; times in ms, medians of the repeats. Printed as a table line."""
    plain, ccs = statistics.median(plain_runs), statistics.median(ccs_runs)
    say(f"{n:>6} {plain * 1000:>15.0f} ms {ccs * 1000:>9.0f} ms {reads:>6} "
        f"{ccs / plain:>6.2f}x")
    return {"adapter": adapter, "n": n, "stock": stock, "singleton": singleton,
            "stock_ms": plain * 1000, "singleton_ms": ccs * 1000, "reads": reads,
            "ratio": ccs / plain,
            "stock_runs_ms": [t * 1000 for t in plain_runs],
            "singleton_runs_ms": [t * 1000 for t in ccs_runs]}


def warm_up(beat) -> None:
    """One read before timing: a running beat knows its workers, so its reads
    return when all have answered; a new one waits the full timeout once."""
    beat.ccs_coordinator.reader.read(None)


def redbeat_tick(app, n: int, singleton: bool) -> tuple[float, int]:
    import redis
    from celery.schedules import schedule
    from redbeat import RedBeatScheduler, RedBeatSchedulerEntry

    from ccs_beat.contrib.redbeat import SingletonRedBeatScheduler

    prefix = f"bench-{os.getpid()}-{time.monotonic_ns()}:"
    app.conf.update(redbeat_redis_url=REDBEAT, redbeat_key_prefix=prefix,
                    redbeat_lock_key=None, ccs_beat_default_policy="skip")
    app.__dict__.pop("redbeat_conf", None)
    last = app.now() - timedelta(hours=2)
    for i in range(n):
        RedBeatSchedulerEntry(f"e{i}", "tests.sleep", schedule(3600.0), args=[0],
                              kwargs={"tag": f"b{i}"}, app=app, last_run_at=last,
                              options={"singleton": singleton}).save()
    cls = SingletonRedBeatScheduler if singleton else RedBeatScheduler
    beat = cls(app=app, max_interval=1)
    try:
        if singleton:
            warm_up(beat)
        start = time.perf_counter()
        beat.tick()
        took = time.perf_counter() - start
        reads = beat.ccs_coordinator.reader.reads - 1 if singleton else 0
    finally:
        beat.close()
        client = redis.Redis.from_url(REDBEAT)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    return took, reads


def run_redbeat(app, sizes, repeats) -> list[dict]:
    say("\ncelery-redbeat: one tick with N due entries (4 workers, Redis)")
    say(f"{'N':>6} {'RedBeatScheduler':>18} {'Singleton…':>12} {'reads':>6} {'ratio':>7}")
    rows = []
    for n in sizes:
        plain = [redbeat_tick(app, n, False)[0] for _ in range(repeats)]
        runs = [redbeat_tick(app, n, True) for _ in range(repeats)]
        rows.append(row("redbeat", "RedBeatScheduler", "SingletonRedBeatScheduler", n,
                        plain, [t for t, _ in runs], max(r for _, r in runs)))
    return rows


DJANGO_BENCH = r'''
import json, os, sys, time
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler
from ccs_beat.contrib.django.models import SingletonSettings
from ccs_beat.contrib.django.schedulers import SingletonDatabaseScheduler
from tests.integration.proj import app

n, repeats = int(sys.argv[1]), int(sys.argv[2])
every, _ = IntervalSchedule.objects.get_or_create(every=3600, period="seconds")

def tick(cls, singleton):
    PeriodicTask.objects.all().delete()
    past = timezone.now() - timedelta(hours=2)
    tasks = PeriodicTask.objects.bulk_create([
        PeriodicTask(name=f"e{i}", task="tests.sleep", interval=every, args="[0]",
                     kwargs='{"tag": "b%d"}' % i, last_run_at=past) for i in range(n)])
    SingletonSettings.objects.bulk_create(
        [SingletonSettings(periodic_task=t, enabled=singleton) for t in tasks])
    beat = cls(app=app, max_interval=1)
    try:
        if singleton:
            beat.ccs_coordinator.reader.read(None)   # warm up, as in a running beat
        start = time.perf_counter()
        ticks = 0
        while beat.tick() == 0 and ticks < 10 * n:   # stock tick(): one entry a call
            ticks += 1
        took = time.perf_counter() - start
        return took, (beat.ccs_coordinator.reader.reads - 1 if singleton else 0)
    finally:
        beat.close()

plain = [tick(DatabaseScheduler, False)[0] for _ in range(repeats)]
runs = [tick(SingletonDatabaseScheduler, True) for _ in range(repeats)]
print(json.dumps({"plain": plain, "ccs": [t for t, _ in runs],
                  "reads": max(r for _, r in runs)}))
'''


def run_django(env: dict[str, str], sizes, repeats) -> list[dict]:
    from tests.dj.pg import django_env, fresh_database, migrate
    say("\ndjango-celery-beat: one tick with N due periodic tasks (4 workers, "
        "PostgreSQL, Redis)")
    say(f"{'N':>6} {'DatabaseScheduler':>18} {'Singleton…':>12} {'reads':>6} {'ratio':>7}")
    rows = []
    with fresh_database("ccs_bench") as db, tempfile.TemporaryDirectory() as tmp:
        denv = dict(env, PYTHONPATH=str(REPO), **django_env(f"postgres:{db}"))
        migrate(denv, tmp)
        for n in sizes:
            out = subprocess.run([sys.executable, "-c", DJANGO_BENCH, str(n), str(repeats)],
                                 env=denv, cwd=tmp, capture_output=True, text=True,
                                 timeout=900)
            if out.returncode != 0:
                raise SystemExit(out.stdout + out.stderr)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row("django", "DatabaseScheduler", "SingletonDatabaseScheduler", n,
                            got["plain"], got["ccs"], got["reads"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout (the table goes to stderr)")
    args = parser.parse_args()
    sizes, repeats = ([200], 2) if args.quick else ([200, 1000], 3)
    global OUT
    if args.json:
        OUT = sys.stderr

    from tests.integration.harness import Cluster
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(REDIS, Path(tmp))
        try:
            hosts = []
            for i in range(4):
                cluster.start_worker(f"w{i}", concurrency=1, wait=False)
                hosts.append(cluster.hostname(f"w{i}"))
            cluster.wait_for_workers(hosts)
            app = cluster.app
            app.conf.task_default_queue = cluster.queue + "-unconsumed"  # do not run them
            rows = run_redbeat(app, sizes, repeats)
            env = cluster.env(CCS_TEST_SETTINGS=json.dumps(
                {"task_default_queue": cluster.queue + "-unconsumed"}))
            rows += run_django(env, sizes, repeats)
        finally:
            cluster.close()
    if args.json:
        import ccs_beat
        print(json.dumps({"ccs_beat_file": ccs_beat.__file__, "repo": str(REPO),
                          "repeats": repeats, "sizes": sizes, "rows": rows}))


if __name__ == "__main__":
    main()
