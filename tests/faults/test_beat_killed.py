"""Faults: beat killed with ``kill -9`` right after it published a message and
before it could save its ledger, then restarted: no duplicate, no lost ledger.

The beat process kills itself from Celery's ``after_task_publish`` signal
(``CCS_TEST_KILL_AFTER_PUBLISH``, see tests/integration/proj.py), so the kill
lands every time in the window the write-ahead journal exists for. No worker
runs yet, so the message waits in the broker queue where no cluster read can
see it: only the journal tells the restarted beat about it. Without the
journal the restarted beat sends a second copy and the two runs overlap.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import BROKERS
from tests.dj.pg import django_env, django_shell, fresh_database, migrate, require_postgres
from tests.integration.harness import REPO, Cluster, assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(180)

ENTRY = {"task": "tests.sleep", "schedule": 1.0, "args": [2], "kwargs": {"tag": "long"},
         "options": {"singleton": {"overlap": "skip", "expires": 60}}}


def kill_after_publish_then_restart(cluster: Cluster, scheduler: str) -> None:
    """Beat-a publishes and dies at once; beat-b must skip naming beat-a's id,
    and the worker must run that message first with nothing overlapping."""
    first = cluster.start_beat("beat-a", scheduler=scheduler, wait=False,
                               CCS_TEST_KILL_AFTER_PUBLISH="1")
    first.popen.wait(timeout=60)
    published = re.findall(r"fault injection: published ([0-9a-f-]+)", first.text())
    assert published, f"beat-a did not publish:\n{first.text()[-3000:]}"
    assert not first.emitted("long")   # killed before it could report the emission

    second = cluster.start_beat("beat-b", scheduler=scheduler)
    wait_until(lambda: second.skipped("long"), 30,
               what="the restarted beat to skip")
    skip = second.skipped("long")[0]
    assert skip.reason == "previous_queued", skip
    assert skip.blocker and skip.blocker.task_id == published[0], skip
    assert "recovered 1 emission record(s)" in second.text()
    assert not second.emitted("long")

    cluster.start_worker("w1", concurrency=2)
    wait_until(lambda: len(cluster.finished_runs("long")) >= 2, 40, what="two runs")
    runs = cluster.runs("long")
    assert runs[0].id == published[0]
    assert len({r.id for r in runs}) == len(runs)
    assert_no_overlap(runs)


def test_a_default_beat_killed_after_publishing_restarts_without_a_duplicate(make_cluster):
    cluster = make_cluster(schedule={"long": ENTRY})
    kill_after_publish_then_restart(cluster, "ccs_beat.SingletonScheduler")


SETUP = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from ccs_beat.contrib.django.models import SingletonSettings
every, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
task = PeriodicTask.objects.create(name="long", task="tests.sleep", interval=every,
                                   args="[2]", kwargs='{"tag": "long"}', queue=QUEUE)
SingletonSettings.objects.create(periodic_task=task, overlap="skip", expires=60)
"""


def test_a_django_beat_killed_after_publishing_restarts_without_a_duplicate(tmp_path, broker):
    require_postgres()
    with fresh_database("ccs_fault") as db:
        env = dict(os.environ, PYTHONPATH=str(REPO), **django_env(f"postgres:{db}"))
        migrate(env, str(tmp_path))
        cluster = Cluster(BROKERS[broker][0], tmp_path, app_module="tests.dj.celeryapp",
                          extra_env=django_env(f"postgres:{db}"))
        try:
            django_shell(env, SETUP.replace("QUEUE", repr(cluster.queue)), str(tmp_path))
            kill_after_publish_then_restart(
                cluster, "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler")
        finally:
            cluster.close()


def test_a_redbeat_beat_killed_after_publishing_restarts_without_a_duplicate(redbeat_cluster):
    cluster = redbeat_cluster(redbeat_lock_timeout=3)
    cluster.schedule = {"long": ENTRY}
    kill_after_publish_then_restart(
        cluster, "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler")
