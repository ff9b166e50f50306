"""A remembered ``buffer_one`` run goes out at most once, only for a singleton,
and only for an entry still switched on -- SingletonDatabaseScheduler driven
tick by tick on a real database and the filesystem transport (no worker: the
ledger's outstanding emission is what blocks, and its expiry what ends it).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ccs_beat.contrib.django.models import SingletonLedger, SingletonSettings
from ccs_beat.contrib.django.schedulers import SingletonDatabaseScheduler
from ccs_beat.identity import task_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
def published() -> Iterator[list[str]]:
    names: list[str] = []

    def record(headers: dict[str, Any] | None = None, **_: Any) -> None:
        names.append((headers or {}).get("periodic_task_name", "?"))
    before_task_publish.connect(record, weak=False)
    yield names
    before_task_publish.disconnect(record)


def task(name: str, every: int, **fields: Any) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(every=every,
                                                         period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=name, task="tests.sleep", interval=interval,
                                       args="[1]", **fields)


def remembered(name: str, blocked_for: float) -> None:
    """A ledger in which ``name`` has a remembered run, blocked by an emission
    of its key (``tests.sleep`` with args ``[1]``) still queued for
    ``blocked_for`` seconds."""
    now = time.time()
    SingletonLedger.objects.create(name="default", state={
        "version": 1, "seq": 0, "pending": [name], "entries": {name: [
            {"task_id": "queued-1", "key": task_key("tests.sleep", [1], {}), "sent_at": now - 1,
             "expires_at": now + blocked_for}]}})


def run(app, seconds: float) -> SingletonDatabaseScheduler:
    app.conf.update(ccs_beat_inspect_timeout=0.2, ccs_beat_buffer_poll_interval=0.2)
    beat = SingletonDatabaseScheduler(app=app, max_interval=0.2)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(max(0.0, min(beat.tick(), 0.2)))
    finally:
        beat.close()
    return beat


def test_a_remembered_run_is_sent_once_and_absorbs_the_due_run_it_stands_for(app, published):
    # due every 5 s, last run 20 s ago: due at once; the remembered run (its
    # blocker already expired) goes out at the first tick, before beat has built
    # its heap, and the entry is next due 5 s after it -- not again at once
    gc = task("gc", 5, last_run_at=timezone.now() - datetime.timedelta(seconds=20))
    SingletonSettings.objects.create(periodic_task=gc, overlap="buffer_one")
    remembered("gc", blocked_for=-1.0)
    run(app, 4.3)   # short of the next due run, 5 s after the buffered one
    assert published == ["gc"]


def test_a_remembered_run_of_an_entry_no_longer_singleton_is_dropped_not_sent(app, published):
    gc = task("gc", 60)
    SingletonSettings.objects.create(periodic_task=gc, enabled=False)
    remembered("gc", blocked_for=0.3)
    beat = run(app, 2.0)
    assert published == []
    assert not beat.ccs_coordinator.ledger.pending


def test_a_remembered_run_of_a_task_that_expired_meanwhile_is_dropped(app, published):
    # due every second; the task expires (django-celery-beat switches it off
    # itself) before the queued emission that blocks it does
    gc = task("gc", 1, expires=timezone.now() + datetime.timedelta(seconds=1.0))
    SingletonSettings.objects.create(periodic_task=gc, overlap="buffer_one")
    remembered("gc", blocked_for=2.0)
    run(app, 3.5)
    assert published == []
    assert PeriodicTask.objects.get(pk=gc.pk).enabled is False


def crontab_task_far_from_now(name: str) -> PeriodicTask:
    """A crontab task due about 12 hours from now: django-celery-beat loads only
    crontabs due within a couple of hours, so it is not in beat's schedule."""
    from django_celery_beat.models import CrontabSchedule
    from django_celery_beat.utils import aware_now
    hour = (aware_now().hour + 12) % 24
    cron = CrontabSchedule.objects.create(minute="0", hour=str(5 if hour == 4 else hour),
                                          timezone=timezone.get_current_timezone_name())
    return PeriodicTask.objects.create(name=name, task="tests.sleep", crontab=cron, args="[1]")


def test_a_remembered_run_of_a_crontab_task_beat_has_not_loaded_is_sent(app, published):
    # the nightly job blocked past its window by a previous run that ran long
    gc = crontab_task_far_from_now("nightly-gc")
    SingletonSettings.objects.create(periodic_task=gc, overlap="buffer_one")
    remembered("nightly-gc", blocked_for=1.0)

    beat = run(app, 3.0)

    assert published == ["nightly-gc"]
    assert not beat.ccs_coordinator.ledger.pending


def test_the_ledger_keeps_what_a_crontab_task_beat_has_not_loaded_sent(app):
    crontab_task_far_from_now("nightly-gc")
    remembered("nightly-gc", blocked_for=3600.0)
    app.conf.update(ccs_beat_inspect_timeout=0.2)

    beat = SingletonDatabaseScheduler(app=app, max_interval=0.2)
    try:
        assert "nightly-gc" not in beat.schedule
        ledger = beat.ccs_coordinator.ledger
        assert [e.task_id for e in ledger.entries["nightly-gc"]] == ["queued-1"]
        assert beat.ccs_coordinator.ledger.pending == {"nightly-gc"}
    finally:
        beat.close()


def test_a_remembered_run_of_a_one_off_beat_has_not_loaded_counts_as_its_run(app, published):
    # sent while django-celery-beat has not loaded the row: the run must reach
    # the database, or the one-off runs again when its hour comes
    gc = crontab_task_far_from_now("nightly-gc")
    PeriodicTask.objects.filter(pk=gc.pk).update(one_off=True)
    SingletonSettings.objects.create(periodic_task=gc, overlap="buffer_one")
    remembered("nightly-gc", blocked_for=1.0)

    run(app, 3.0)

    assert published == ["nightly-gc"]
    gc.refresh_from_db()
    assert gc.total_run_count == 1 and gc.last_run_at is not None


def test_a_remembered_run_of_an_expired_task_beat_has_not_loaded_is_dropped(app, published):
    gc = crontab_task_far_from_now("nightly-gc")
    PeriodicTask.objects.filter(pk=gc.pk).update(
        expires=timezone.now() - datetime.timedelta(hours=1))
    SingletonSettings.objects.create(periodic_task=gc, overlap="buffer_one")
    remembered("nightly-gc", blocked_for=1.0)

    beat = run(app, 3.0)

    assert published == []
    assert not beat.ccs_coordinator.ledger.pending


def clocked_one_off(name: str, at: datetime.datetime) -> PeriodicTask:
    from django_celery_beat.models import ClockedSchedule
    clock = ClockedSchedule.objects.create(clocked_time=at)
    return PeriodicTask.objects.create(name=name, task="tests.sleep", clocked=clock,
                                       one_off=True, args="[1]")


def blocked_by_a_queued_emission(name: str, blocked_for: float) -> None:
    """A ledger in which an emission of ``name``'s key is queued for ``blocked_for`` s."""
    now = time.time()
    SingletonLedger.objects.create(name="default", state={
        "version": 1, "seq": 0, "pending": [], "entries": {name: [
            {"task_id": "queued-1", "key": task_key("tests.sleep", [1], {}),
             "sent_at": now - 1, "expires_at": now + blocked_for}]}})


@pytest.mark.parametrize("overlap", ["skip", "buffer_one"])
def test_a_blocked_clocked_one_off_runs_once_as_soon_as_nothing_blocks_it(
        app, published, overlap):
    # a clocked schedule is checked again only years after its time: a skip
    # must not leave the one-off waiting for a restart
    job = clocked_one_off("once", timezone.now() - datetime.timedelta(seconds=1))
    SingletonSettings.objects.create(periodic_task=job, overlap=overlap)
    blocked_by_a_queued_emission("once", blocked_for=1.0)

    run(app, 4.0)

    assert published == ["once"]
    job.refresh_from_db()
    assert job.enabled is False   # django-celery-beat's mark of a one-off that ran
