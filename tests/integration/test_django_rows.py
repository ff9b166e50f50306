"""SingletonDatabaseScheduler with real processes, on rows that stock beat
handles badly: a ``one_off`` task whose first run is buffered, and a task whose
arguments cannot be keyed. Real ``celery beat`` on PostgreSQL, real workers,
Redis as the broker.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

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


class DjangoCluster:
    """A cluster whose beat reads django-celery-beat's tables in a fresh database."""

    def __init__(self, cluster: Cluster, db: str, env: dict[str, str], cwd: str) -> None:
        self.cluster, self.db, self._env, self._cwd = cluster, db, env, cwd

    def shell(self, code: str) -> str:
        return django_shell(self._env, code.replace("QUEUE", repr(self.cluster.queue)),
                            self._cwd)

    def row(self, name: str) -> tuple[bool, int]:
        """``(enabled, total_run_count)`` of the periodic task ``name``."""
        with psycopg.connect(host=PG_ADDRESS[0], user=PG_USER, dbname=self.db) as conn:
            found = conn.execute("SELECT enabled, total_run_count FROM "
                                 "django_celery_beat_periodictask WHERE name = %s",
                                 (name,)).fetchone()
        assert found is not None, name
        return bool(found[0]), int(found[1])


@pytest.fixture
def django_cluster(tmp_path: Path) -> Iterator[Callable[..., DjangoCluster]]:
    require_postgres()
    broker = require_broker("redis")
    with fresh_database() as db:
        env = dict(os.environ, PYTHONPATH=str(REPO), **django_env(f"postgres:{db}"))
        migrate(env, str(tmp_path))
        clusters: list[Cluster] = []

        def make(settings: dict | None = None) -> DjangoCluster:
            cluster = Cluster(broker, tmp_path, app_module="tests.dj.celeryapp",
                              settings=settings, extra_env=django_env(f"postgres:{db}"))
            clusters.append(cluster)
            return DjangoCluster(cluster, db, env, str(tmp_path))
        try:
            yield make
        finally:
            for cluster in clusters:
                cluster.close()


ONE_OFF = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from ccs_beat.contrib.django.models import SingletonSettings
every, _ = IntervalSchedule.objects.get_or_create(every=2, period="seconds")
task = PeriodicTask.objects.create(name="once", task="tests.sleep", interval=every,
                                   one_off=True, args="[4]", kwargs='{"tag": "once"}',
                                   queue=QUEUE)
SingletonSettings.objects.create(periodic_task=task, overlap="buffer_one", key="name")
"""


def test_a_one_off_whose_first_run_is_buffered_runs_exactly_once(django_cluster):
    # a buffered run re-checked every 0.2 s almost always goes out before the
    # next due time (2 s interval): the race the one-off used to lose forever
    dj = django_cluster(settings={"ccs_beat_buffer_poll_interval": 0.2})
    cluster = dj.cluster
    dj.shell(ONE_OFF)
    cluster.start_worker("w1", concurrency=2)
    # an identical task (key "name") is running when the one-off is first due
    cluster.send(5.0, tag="blocker")
    wait_until(lambda: cluster.runs("blocker"), 20, what="the blocker to start")
    beat = cluster.start_beat(scheduler=SCHEDULER)

    wait_until(lambda: beat.skipped("once"), 20,
               what="the one-off's first due run to be skipped and buffered")
    wait_until(lambda: cluster.finished_runs("once"), 30, what="the buffered run to finish")
    # well past several more periods of the interval: no second run, no new skip
    wait_until(lambda: dj.row("once")[0] is False, 20, what="the one-off to be disabled")
    skips = len(beat.skipped("once"))
    time.sleep(8)   # four more periods of the interval
    assert len(cluster.runs("once")) == 1, cluster.runs("once")
    assert len(beat.skipped("once")) == skips
    assert_no_overlap(cluster.runs())
    cluster.stop(beat, sig=signal.SIGTERM)
    # disabled after its one run (django-celery-beat resets the count as it disables it)
    assert dj.row("once")[0] is False


CLOCKED_ONE_OFF = """
import datetime
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask
from ccs_beat.contrib.django.models import SingletonSettings
clock = ClockedSchedule.objects.create(
    clocked_time=timezone.now() + datetime.timedelta(seconds=6))
task = PeriodicTask.objects.create(name="at six", task="tests.sleep", clocked=clock,
                                   one_off=True, args="[1]", kwargs='{"tag": "at six"}',
                                   queue=QUEUE)
SingletonSettings.objects.create(periodic_task=task, overlap="skip", key="name")
"""


def test_a_skipped_clocked_one_off_runs_once_its_blocker_ends(django_cluster):
    # a clocked schedule is looked at again only years after its time: the
    # skipped one-off must go out when the blocker ends, not at a restart
    dj = django_cluster(settings={"ccs_beat_buffer_poll_interval": 0.5})
    cluster = dj.cluster
    cluster.start_worker("w1", concurrency=2)
    dj.shell(CLOCKED_ONE_OFF)
    cluster.send(12.0, tag="blocker")   # identical under key "name"; the one-off is due in 6 s
    wait_until(lambda: cluster.runs("blocker"), 20, what="the blocker to start")
    beat = cluster.start_beat(scheduler=SCHEDULER)

    wait_until(lambda: beat.skipped("at six"), 30,
               what="the one-off's due run to be skipped")
    wait_until(lambda: cluster.finished_runs("at six"), 40,
               what="the one-off to run once the blocker ended")
    time.sleep(3)
    runs = cluster.runs("at six")
    assert len(runs) == 1, runs
    assert runs[0].start >= cluster.finished_runs("blocker")[0].end
    assert dj.row("at six")[0] is False
    cluster.stop(beat, sig=signal.SIGTERM)



BAD_ARGUMENTS = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
PeriodicTask.objects.create(name="nan-args", task="tests.sleep", interval=every,
                            args="[NaN]", queue=QUEUE)
PeriodicTask.objects.create(name="healthy", task="tests.sleep", interval=every,
                            args="[0.1]", kwargs='{"tag": "healthy"}', queue=QUEUE)
"""


def test_a_row_whose_arguments_cannot_be_keyed_leaves_only_itself_out(django_cluster):
    # no singleton row: the app default (skip, key args) applies, and NaN has no key
    dj = django_cluster()
    cluster = dj.cluster
    dj.shell(BAD_ARGUMENTS)
    cluster.start_worker("w1", concurrency=2)
    beat = cluster.start_beat(scheduler=SCHEDULER)

    wait_until(lambda: len(cluster.finished_runs("healthy")) >= 2, 30,
               what="the healthy task to run beside the bad one")
    assert beat.alive()
    assert "periodic task 'nan-args'" in beat.text()
    assert "arguments cannot be keyed" in beat.text()
    assert not beat.emitted("nan-args")


TWO_ENTRIES = """
import datetime
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from ccs_beat.contrib.django.models import SingletonSettings
every3, _ = IntervalSchedule.objects.get_or_create(every=3, period="seconds")
every60, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
a = PeriodicTask.objects.create(name="a", task="tests.sleep", interval=every3,
                                args="[5]", kwargs='{"tag": "a"}', queue=QUEUE)
SingletonSettings.objects.create(periodic_task=a, overlap="buffer_one")
b = PeriodicTask.objects.create(name="b", task="tests.sleep", interval=every60,
                                args="[0.1]", kwargs='{"tag": "b"}', queue=QUEUE,
                                last_run_at=timezone.now() - datetime.timedelta(seconds=120))
SingletonSettings.objects.create(periodic_task=b, enabled=False)
"""


def test_a_buffered_run_does_not_make_other_entries_due_again(django_cluster):
    # 'b' is due once at start, then in 60 s; 'a' outlasts its period, so its
    # due runs are skipped and buffered, and each buffered run goes out
    dj = django_cluster(settings={"ccs_beat_buffer_poll_interval": 0.2})
    cluster = dj.cluster
    dj.shell(TWO_ENTRIES)
    cluster.start_worker("w1", concurrency=2)
    beat = cluster.start_beat(scheduler=SCHEDULER)

    wait_until(lambda: sum(e.buffered for e in beat.emitted("a")) >= 2, 40,
               what="two buffered runs of 'a'")
    time.sleep(1.0)
    assert len(cluster.runs("b")) == 1, (cluster.runs("b"), beat.text()[-3000:])
    assert len(beat.emitted("b")) <= 1
    assert_no_overlap(cluster.runs("a"))
