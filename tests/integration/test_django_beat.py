"""SingletonDatabaseScheduler with real processes: a real ``celery beat`` on
django-celery-beat's tables in PostgreSQL, real workers, RabbitMQ.

A periodic task due every second sleeps 3 s. While its singleton setting is
on, no two runs overlap; switching it off in the database (a bulk update, as a
script would) lets runs overlap again, without restarting beat.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psycopg

from tests.conftest import require_broker
from tests.dj.pg import (
    PG_ADDRESS,
    PG_USER,
    django_env,
    django_shell,
    fresh_database,
    migrate,
    require_postgres,
)
from tests.integration.harness import REPO, Cluster, assert_no_overlap, wait_until

SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"

SETUP = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from ccs_beat.contrib.django.models import SingletonSettings
every, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
task = PeriodicTask.objects.create(name="long", task="tests.sleep", interval=every,
                                   args="[3]", kwargs='{"tag": "long"}', queue=QUEUE)
SingletonSettings.objects.create(periodic_task=task, overlap="skip")
"""

TOGGLE_OFF = """
from ccs_beat.contrib.django.models import SingletonSettings
print(SingletonSettings.objects.filter(periodic_task__name="long").update(enabled=False))
"""


def overlapping(runs) -> list[tuple[str, str]]:
    pairs = []
    ordered = sorted(runs, key=lambda r: r.start)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b.start < (a.end if a.end is not None else float("inf")):
                pairs.append((a.id, b.id))
    return pairs


def test_singleton_toggle_in_the_database_governs_a_running_beat(tmp_path):
    require_postgres()
    broker = require_broker("amqp")
    with fresh_database() as db:
        env = dict(os.environ, PYTHONPATH=str(REPO), **django_env(f"postgres:{db}"))
        migrate(env, str(tmp_path))
        cluster = Cluster(broker, tmp_path, app_module="tests.dj.celeryapp",
                          extra_env=django_env(f"postgres:{db}"))
        try:
            django_shell(env, SETUP.replace("QUEUE", repr(cluster.queue)), str(tmp_path))
            for name in ("w1", "w2"):
                cluster.start_worker(name, concurrency=2, wait=False)
            cluster.wait_for_workers([cluster.hostname("w1"), cluster.hostname("w2")])
            beat = cluster.start_beat(scheduler=SCHEDULER)

            # singleton on: runs follow each other, none overlaps
            wait_until(lambda: len(cluster.finished_runs("long")) >= 3, 40,
                       what="three finished runs with the singleton on")
            before = cluster.runs("long")
            assert_no_overlap(before)
            assert any(e.reason == "identical_in_cluster" and e.task == "tests.sleep"
                       for e in beat.skipped("long")), beat.text()[-3000:]

            # `celery ccs status` shows the running task and beat's ledger in the database
            status = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "tests.dj.celeryapp", "ccs", "status",
                 "--json", "--scheduler", SCHEDULER],
                cwd=cluster.dir, env=cluster.env(), capture_output=True, text=True, timeout=60)
            assert status.returncode == 0, status.stderr
            report = json.loads(status.stdout)
            assert report["ledger_source"] == "database table ccs_beat_singletonledger"
            ledger_ids = {e["task_id"] for e in report["ledger"] if e["entry"] == "long"}
            active = {r["id"] for r in report["rows"] if r["state"] == "active"}
            assert active & ledger_ids, (active, ledger_ids)   # the run beat emitted
            assert any(r["task"] == "tests.sleep" for r in report["rows"]), report

            # singleton off, written straight to the database; beat keeps running
            assert django_shell(env, TOGGLE_OFF, str(tmp_path)).strip() == "1"
            pid = beat.popen.pid
            wait_until(lambda: overlapping(cluster.runs("long")), 30, interval=0.5,
                       what="overlapping runs once the singleton is off")
            assert beat.alive() and beat.popen.pid == pid
            assert "DatabaseScheduler: Schedule changed." in beat.text()

            # stop beat cleanly (it writes its counters) and read what it stored
            cluster.stop(beat, sig=signal.SIGTERM)
            sent = len(beat.emitted("long"))
            with psycopg.connect(host=PG_ADDRESS[0], user=PG_USER, dbname=db) as conn:
                total, = conn.execute(
                    "SELECT total_run_count FROM django_celery_beat_periodictask "
                    "WHERE name = 'long'").fetchone()
                decision = conn.execute(
                    "SELECT d.decision, d.reason FROM ccs_beat_singletondecision d JOIN "
                    "django_celery_beat_periodictask t ON t.id = d.periodic_task_id "
                    "WHERE t.name = 'long'").fetchone()
                ledger, = conn.execute(
                    "SELECT state FROM ccs_beat_singletonledger").fetchone()
            # skipped runs do not count; every run sent does
            assert total == sent, (total, sent)
            assert decision is not None and decision[0] in ("emitted", "skipped")
            state = ledger if isinstance(ledger, dict) else json.loads(ledger)
            assert state["entries"]["long"], state
        finally:
            cluster.close()
