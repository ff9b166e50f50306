"""SingletonDatabaseScheduler against a real database (SQLite here; the same
file runs on PostgreSQL through ``test_postgresql.py``): where the policy comes
from, what a bad row does, where the ledger and the decisions are kept."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
from celery import Celery
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from ccs_beat import ConfigurationError
from ccs_beat.contrib.django.models import SingletonDecision, SingletonLedger, SingletonSettings
from ccs_beat.contrib.django.schedulers import SingletonDatabaseScheduler
from ccs_beat.events import BeatAction, Blocked, DecisionEvent, Reason
from ccs_beat.ledger import Emission, Ledger

pytestmark = pytest.mark.django_db(transaction=True)



class _Event(DecisionEvent):
    def with_id(self, task_id: str) -> DecisionEvent:
        return dataclasses.replace(self, task_id=task_id)


def event(action: str, detail: str, blocker: Blocked | None = None) -> _Event:
    """A beat decision event as the coordinator reports it."""
    return _Event(source="beat", action=BeatAction(action),
                  reason=Reason.IDENTICAL_IN_CLUSTER if action == "skip"
                  else Reason.NOTHING_IDENTICAL, detail=detail, at=time.time(),
                  blocker=blocker, key="k")

def make_task(name: str, *, args: str = "[1]", kwargs: str = "{}") -> PeriodicTask:
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=name, task="tests.sleep", interval=every,
                                       args=args, kwargs=kwargs)


def start(app: Celery) -> SingletonDatabaseScheduler:
    return SingletonDatabaseScheduler(app=app, max_interval=1)


def test_a_row_becomes_the_entry_singleton_option(app):
    task = make_task("gc")
    SingletonSettings.objects.create(periodic_task=task, overlap="buffer_one", key="name")
    plain = make_task("plain")
    beat = start(app)
    try:
        assert beat.schedule["gc"].options["singleton"] == {"overlap": "buffer_one",
                                                            "key": "name"}
        assert "singleton" not in beat.schedule[plain.name].options
        coordinator = beat.ccs_coordinator
        assert coordinator.policy_for("gc", beat.schedule["gc"].options).overlap == "buffer_one"
    finally:
        beat.close()


def test_a_disabled_row_means_overlap_allowed(app):
    SingletonSettings.objects.create(periodic_task=make_task("free"), enabled=False)
    beat = start(app)
    try:
        policy = beat.ccs_coordinator.policy_for("free", beat.schedule["free"].options)
        assert not policy.checked
    finally:
        beat.close()


def test_a_bad_row_leaves_only_that_task_out_and_names_it(app, caplog):
    good = make_task("good")
    bad = make_task("bad")
    SingletonSettings.objects.create(periodic_task=good)
    SingletonSettings.objects.create(periodic_task=bad)
    # a script writes past the admin's validation
    SingletonSettings.objects.filter(periodic_task=bad).update(overlap="sometimes")
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = start(app)
    try:
        assert "good" in beat.schedule
        assert "bad" not in beat.schedule
        assert "periodic task 'bad'" in caplog.text and "'sometimes'" in caplog.text
        # fixed in the database: back in the schedule on the next reload
        SingletonSettings.objects.filter(periodic_task=bad).update(overlap="skip")
        assert "bad" in beat.schedule
    finally:
        beat.close()


def test_a_row_whose_arguments_cannot_be_keyed_is_left_out(app, caplog):
    # JSON in the database can still hold a value with no canonical form
    task = make_task("nested", args="[NaN]")
    SingletonSettings.objects.create(periodic_task=task)
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = start(app)
    try:
        assert "nested" not in beat.schedule
        assert "periodic task 'nested'" in caplog.text and "nan" in caplog.text
    finally:
        beat.close()


def test_a_settings_change_reaches_a_running_scheduler(app):
    task = make_task("toggled")
    row = SingletonSettings.objects.create(periodic_task=task)
    beat = start(app)
    try:
        assert beat.schedule["toggled"].options["singleton"] == {"overlap": "skip"}
        time.sleep(0.01)   # PeriodicTasks.last_update must move forward
        SingletonSettings.objects.filter(pk=row.pk).update(enabled=False)   # bulk: no signal
        assert beat.schedule["toggled"].options["singleton"] is False
        time.sleep(0.01)
        row.refresh_from_db()
        row.delete()
        assert "singleton" not in beat.schedule["toggled"].options
    finally:
        beat.close()


@pytest.mark.parametrize("write", ["save", "update", "bulk_create", "delete"])
def test_every_kind_of_write_marks_the_schedule_changed(write):
    task = make_task("t")
    row = SingletonSettings.objects.create(periodic_task=task)
    before = PeriodicTasks.last_change()
    time.sleep(0.01)
    if write == "save":
        row.overlap = "buffer_one"
        row.save()
    elif write == "update":
        SingletonSettings.objects.all().update(enabled=False)
    elif write == "bulk_create":
        SingletonSettings.objects.bulk_create(
            [SingletonSettings(periodic_task=make_task("u"), enabled=True)])
    else:
        SingletonSettings.objects.all().delete()
    assert PeriodicTasks.last_change() > before


def test_beat_schedule_singleton_options_are_written_to_rows(app):
    app.conf.beat_schedule = {
        "nightly-gc": {"task": "tests.sleep", "schedule": 60.0, "args": [1],
                       "options": {"singleton": {"overlap": "buffer_one", "key": "name"}}},
        "heartbeat": {"task": "tests.sleep", "schedule": 10.0, "args": [0],
                      "options": {"singleton": False}},
    }
    beat = start(app)
    try:
        gc = SingletonSettings.objects.get(periodic_task__name="nightly-gc")
        assert (gc.enabled, gc.overlap, gc.key) == (True, "buffer_one", "name")
        assert SingletonSettings.objects.get(periodic_task__name="heartbeat").enabled is False
        assert beat.ccs_coordinator.policy_for("nightly-gc",
                                   beat.schedule["nightly-gc"].options).overlap == "buffer_one"
    finally:
        beat.close()


def test_a_bad_beat_schedule_option_stops_beat_naming_the_entry(app):
    app.conf.beat_schedule = {
        "nightly-gc": {"task": "tests.sleep", "schedule": 60.0,
                       "options": {"singleton": {"overlap": "sometimes"}}},
    }
    with pytest.raises(ConfigurationError, match=r"beat entry 'nightly-gc'.*'sometimes'"):
        start(app)


def test_the_ledger_is_kept_in_the_database_across_restarts(app):
    make_task("gc")
    beat = start(app)
    try:
        ledger = Ledger()
        ledger.record("gc", Emission(task_id="abc", key="k", sent_at=time.time(),
                                     expires_at=None))
        beat.ccs_coordinator.store.save(ledger)
    finally:
        beat.close()
    assert SingletonLedger.objects.get().state["entries"]["gc"][0]["task_id"] == "abc"
    again = start(app)
    try:
        assert [e.task_id for e in again.ccs_coordinator.ledger.entries["gc"]] == ["abc"]
    finally:
        again.close()


def test_decisions_are_written_for_the_admin_at_the_end_of_a_burst(app):
    task = make_task("gc")
    SingletonSettings.objects.create(periodic_task=task)
    beat = start(app)
    try:
        entry = beat.schedule["gc"]
        skip = event("skip", "identical task in the cluster",
                        blocker=Blocked(task_id="t-1", state="active", worker="w1@host"))
        entry.model.total_run_count = 5
        beat.ccs_on_decision(entry, skip)
        assert not SingletonDecision.objects.exists()   # written at the end of the burst
        beat.ccs_end_burst()
        row = SingletonDecision.objects.get(periodic_task=task)
        assert (row.decision, row.blocker_id, row.blocker_worker, row.blocker_state) == (
            "skipped", "t-1", "w1@host", "active")
        # a skipped run does not count as a run
        assert entry.model.total_run_count == 4

        emit = event("emit", "no identical task queued or running")
        beat.ccs_on_decision(entry, emit.with_id("t-2"))
        beat.ccs_end_burst()
        row.refresh_from_db()
        assert (row.decision, row.task_id, row.blocker_id) == ("emitted", "t-2", "")
        assert entry.model.total_run_count == 4
    finally:
        beat.close()


def test_database_is_the_configured_one():
    import os

    from django.db import connection
    expected = ("postgresql" if os.environ.get("CCS_TEST_DJANGO_DB", "").startswith("postgres")
                else "sqlite")
    assert connection.vendor == expected


def test_celery_beat_scheduler_setting_selects_it_without_the_wrong_scheduler_banner():
    from celery.apps.beat import Beat
    from django.conf import settings
    from django_celery_beat.utils import is_database_scheduler

    app = Celery("ccs_dj_conf", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    beat = Beat(app=app)
    assert beat.scheduler_cls == settings.CELERY_BEAT_SCHEDULER
    from kombu.utils import symbol_by_name
    assert symbol_by_name(beat.scheduler_cls) is SingletonDatabaseScheduler
    assert is_database_scheduler(settings.CELERY_BEAT_SCHEDULER)


def test_a_row_whose_headers_are_not_json_is_left_out_with_an_error_naming_it(app, caplog):
    broken = make_task("broken headers")
    PeriodicTask.objects.filter(pk=broken.pk).update(headers="{not json")
    healthy = make_task("healthy")
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = start(app)
    try:
        assert "broken headers" not in beat.schedule and healthy.name in beat.schedule
        assert "periodic task 'broken headers' cannot be loaded" in caplog.text
    finally:
        beat.close()


@pytest.mark.parametrize(("args", "kwargs"), [("5", "{}"), ("[]", "[1]"), ('"abc"', "{}")])
def test_a_row_whose_arguments_are_not_a_list_and_an_object_is_left_out_even_keyed_by_name(
        app, caplog, args, kwargs):
    odd = make_task("odd", args=args, kwargs=kwargs)
    SingletonSettings.objects.create(periodic_task=odd, key="name")
    healthy = make_task("healthy")
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = start(app)
    try:
        assert "odd" not in beat.schedule and healthy.name in beat.schedule
        assert "periodic task 'odd'" in caplog.text and "JSON list" in caplog.text
    finally:
        beat.close()


def test_a_row_whose_headers_are_json_but_not_an_object_is_left_out(app, caplog):
    odd = make_task("odd headers")
    PeriodicTask.objects.filter(pk=odd.pk).update(headers="[]")
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = start(app)
    try:
        assert "odd headers" not in beat.schedule
        assert "periodic task 'odd headers' cannot be loaded" in caplog.text
    finally:
        beat.close()


def test_a_blocker_id_longer_than_the_column_does_not_lose_the_bursts_decisions(app):
    # a task id is chosen by whoever sends the task; PostgreSQL enforces the
    # column's length (this file also runs there, through test_postgresql.py)
    long_one, other = make_task("long id"), make_task("other")
    beat = start(app)
    try:
        skip = event("skip", "identical task in the cluster",
                        blocker=Blocked(task_id="x" * 300, state="active", worker="w" * 300))
        beat.ccs_on_decision(beat.schedule["long id"], skip)
        emit = event("emit", "no identical task queued or running")
        beat.ccs_on_decision(beat.schedule["other"], emit.with_id("t-1"))
        beat.ccs_end_burst()
        row = SingletonDecision.objects.get(periodic_task=long_one)
        assert row.blocker_id.startswith("x" * 200) and len(row.blocker_id) <= 255
        assert SingletonDecision.objects.get(periodic_task=other).task_id == "t-1"
    finally:
        beat.close()


def test_a_nul_character_in_a_blocker_does_not_lose_the_bursts_decisions(app):
    # PostgreSQL text columns refuse NUL; a task id and a worker name (and so a
    # reason that names a silent worker) are chosen by whoever sends or replies
    hostile, other = make_task("hostile"), make_task("other")
    beat = start(app)
    try:
        skip = event("skip", "cannot read the cluster (no reply from w\x00x)",
                        blocker=Blocked(task_id="abc\x00def", state="active", worker="w\x00x"))
        beat.ccs_on_decision(beat.schedule["hostile"], skip)
        emit = event("emit", "no identical task queued or running")
        beat.ccs_on_decision(beat.schedule["other"], emit.with_id("t-1"))
        beat.ccs_end_burst()
        row = SingletonDecision.objects.get(periodic_task=hostile)
        assert row.blocker_id == "abc\\x00def" and row.blocker_worker == "w\\x00x"
        assert "\x00" not in row.reason
        assert SingletonDecision.objects.get(periodic_task=other).task_id == "t-1"
    finally:
        beat.close()


class PlainNamedScheduler(SingletonDatabaseScheduler):
    """A Django scheduler whose name does not say so."""


def test_status_reads_the_database_ledger_of_a_django_scheduler_whatever_its_name(app):
    from ccs_beat.status import read_ledger
    make_task("gc")
    app.conf.beat_scheduler = f"{__name__}:PlainNamedScheduler"
    beat = PlainNamedScheduler(app=app, max_interval=1)
    try:
        beat.ccs_coordinator.ledger.record("gc", Emission(task_id="t-1", key="k",
                                                          sent_at=time.time()))
        beat.ccs_coordinator.save_ledger()
    finally:
        beat.close()

    found, source, error = read_ledger(app, None)

    assert error is None, error
    assert source == "database table ccs_beat_singletonledger"
    assert found is not None and found.entries["gc"][0].task_id == "t-1"


def test_a_closed_beat_writes_nothing_when_django_celery_beat_syncs_at_exit(app):
    # DatabaseScheduler registers a sync for interpreter exit, when the
    # database may be gone: the ledger's last save belongs to close()
    make_task("gc")
    beat = start(app)
    beat.close()
    saves = []
    beat.ccs_coordinator.store.save = saves.append   # type: ignore[method-assign]
    beat.ccs_coordinator.ledger.dirty = True

    beat.sync()

    assert saves == []


def test_a_row_without_singleton_settings_takes_the_tasks_declared_policy(app):
    # the task's own declaration (identity: its name) decides, not the app
    # default (identity: its arguments, which NaN would make unkeyable)
    from ccs_beat import SingletonTask

    @app.task(name="tests.declared_by_name", base=SingletonTask, singleton={"key": "name"})
    def declared_by_name(x):
        return x

    every, _ = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="by name", task="tests.declared_by_name", interval=every,
                                args="[NaN]")
    beat = start(app)
    try:
        entry = beat.schedule["by name"]
        policy = beat.ccs_coordinator.policy_for(entry.name, entry.options, entry.task)
        assert policy.key.kind == "name"
        assert beat.ccs_coordinator.policies.key_for(entry, policy) == "tests.declared_by_name"
    finally:
        beat.close()
