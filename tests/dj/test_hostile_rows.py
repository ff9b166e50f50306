"""A periodic task row is data that a script, a fixture or another program can
write: whatever its fields hold, beat leaves out only that row (naming it),
``celery ccs check`` names it, and the admin's "Run selected tasks" names it
instead of answering with a server error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from django.test import Client
from django_celery_beat.models import PeriodicTask

from ccs_beat.checks import check_app
from ccs_beat.contrib.django.models import SingletonSettings
from ccs_beat.contrib.django.schedulers import SingletonDatabaseScheduler
from tests.dj.adminkit import message_texts, post_action

pytestmark = pytest.mark.django_db(transaction=True)

#: JSON nested deeper than any parser's recursion limit
DEEP = "[" * 200_000 + "]" * 200_000
SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"


@pytest.mark.parametrize("field", ["args", "kwargs", "headers"])
def test_a_row_nested_too_deep_is_left_out_and_the_others_run(
        app: Celery, make_task: Callable[..., PeriodicTask], caplog: pytest.LogCaptureFixture,
        field: str) -> None:
    make_task("healthy", args="[1]")
    make_task("deep", **{field: DEEP})

    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert set(beat.schedule) >= {"healthy"}
        assert "deep" not in beat.schedule
    finally:
        beat.close()
    assert any("'deep'" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_ccs_check_names_a_row_nested_too_deep(
        app: Celery, make_task: Callable[..., PeriodicTask]) -> None:
    make_task("deep", args=DEEP)
    make_task("healthy", args="[1]")
    app.conf.beat_scheduler = SCHEDULER

    report = check_app(app)

    assert any("'deep'" in problem for problem in report.problems), report.problems
    assert "healthy" in report.policies


def test_run_selected_tasks_names_a_row_nested_too_deep(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    deep = make_task("deep", args=DEEP)

    response = post_action(admin_client, "run_tasks", [deep])

    assert response.status_code == 302
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("deep not sent: "), errors


def test_run_selected_tasks_names_a_plain_task_whose_args_are_not_a_list(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    odd = make_task("odd args", args='"abc"')
    SingletonSettings.objects.create(periodic_task=odd, enabled=False)

    response = post_action(admin_client, "run_tasks", [odd])

    assert response.status_code == 302
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("odd args not sent: "), errors
    assert "list" in errors[0]


def deep_json(vendor: str) -> str:
    """JSON nested past Python's decoder (its recursion limit, 1000), that the
    database still stores: SQLite's JSON_VALID stops at about 2000 levels."""
    depth = 5000 if vendor == "postgresql" else 1000
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("table", ["ccs_beat_singletonledger", "ccs_beat_singletonjournal"])
def test_a_ledger_or_journal_row_nested_too_deep_is_set_aside_and_beat_starts(
        app: Celery, make_task: Callable[..., PeriodicTask], caplog: pytest.LogCaptureFixture,
        table: str) -> None:
    from django.db import connection

    from ccs_beat.contrib.django.models import SingletonJournal, SingletonLedger
    make_task("healthy", args="[1]")
    SingletonLedger.objects.create(name="default", state={"version": 1, "seq": 0,
                                                          "entries": {}, "pending": []})
    SingletonJournal.objects.create(ledger="default", seq=1, record={
        "seq": 1, "entry": "healthy", "emission": {"task_id": "t-1", "key": "k",
                                                   "sent_at": 1.0}})
    column = "state" if table == "ccs_beat_singletonledger" else "record"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s", [deep_json(connection.vendor)])

    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert "healthy" in beat.schedule
        assert beat.ccs_coordinator is not None
    finally:
        beat.close()
    assert any(table in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_make_singleton_names_a_row_whose_stored_identity_beat_would_refuse(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    # a script stored an unregistered function on a row whose singleton is off;
    # switching it on would make beat leave the task out of the schedule
    task = make_task("scripted", args="[1]")
    SingletonSettings.objects.create(periodic_task=task, enabled=False)
    SingletonSettings.objects.filter(periodic_task=task).update(key="os.system")

    response = post_action(admin_client, "make_singleton", [task])

    assert SingletonSettings.objects.get(periodic_task=task).enabled is False
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("scripted left unchanged: ")
    assert "not registered" in errors[0]


#: valid JSON that kombu's decoder (django-celery-beat's) turns into an error
#: other than ValueError: its type markers
KOMBU_MARKERS = {"bytes": '[{"__type__": "bytes", "__value__": 5}]',
                 "decimal": '[{"__type__": "decimal", "__value__": "x"}]'}


def rows_beat_cannot_build(make_task: Callable[..., PeriodicTask]) -> list[str]:
    """Rows that stock django-celery-beat dies on: kombu type markers in args
    and headers, an interval no timedelta holds, a crontab in no time zone,
    a task with no schedule at all."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule
    made = []
    for kind, value in KOMBU_MARKERS.items():
        made.append(make_task(f"args {kind}", args=value).name)
        made.append(make_task(f"headers {kind}", headers='{"x": ' + value[1:-1] + "}").name)
    huge = IntervalSchedule.objects.create(every=2_000_000_000, period=IntervalSchedule.DAYS)
    made.append(PeriodicTask.objects.create(name="huge interval", task="tests.sleep",
                                            interval=huge).name)
    for name, column, value in (("martian crontab", "timezone", "Mars/Olympus"),
                                ("unreadable crontab", "minute", "abc")):
        crontab = CrontabSchedule.objects.create(minute="0", hour="3")
        made.append(PeriodicTask.objects.create(name=name, task="tests.sleep",
                                                crontab=crontab).name)
        raw_sql(f"UPDATE django_celery_beat_crontabschedule SET {column} = %s WHERE id = %s",
                [value, crontab.pk])
    nowhere = make_task("no schedule")
    raw_sql("UPDATE django_celery_beat_periodictask SET interval_id = NULL WHERE id = %s",
            [nowhere.pk])
    made.append(nowhere.name)
    return made


def raw_sql(statement: str, params: list[Any]) -> None:
    """Write past the models' validation, as a script or another program can."""
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_rows_stock_beat_dies_on_are_left_out_named_and_the_others_run(
        app: Celery, make_task: Callable[..., PeriodicTask],
        caplog: pytest.LogCaptureFixture) -> None:
    bad = rows_beat_cannot_build(make_task)
    make_task("healthy", args="[1]")

    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert set(beat.schedule) >= {"healthy"} and not set(beat.schedule) & set(bad)
        beat.tick()   # a running beat reloads the schedule: it must not die either
    finally:
        beat.close()
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert all(repr(name) in errors for name in bad), errors


def test_ccs_check_names_every_row_beat_would_leave_out(
        app: Celery, make_task: Callable[..., PeriodicTask]) -> None:
    bad = rows_beat_cannot_build(make_task)
    make_task("healthy", args="[1]")
    app.conf.beat_scheduler = SCHEDULER

    report = check_app(app)

    assert "healthy" in report.policies
    for name in bad:
        assert any(repr(name) in problem for problem in report.problems), (name, report)
        assert name not in report.policies


@pytest.mark.parametrize("kind", sorted(KOMBU_MARKERS))
def test_run_selected_tasks_names_a_row_kombu_cannot_decode(
        admin_client: Client, make_task: Callable[..., PeriodicTask], kind: str) -> None:
    odd = make_task(f"typed {kind}", args=KOMBU_MARKERS[kind])

    response = post_action(admin_client, "run_tasks", [odd])

    assert response.status_code == 302
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith(f"typed {kind} not sent: "), errors


@pytest.mark.parametrize("table", ["ccs_beat_singletonledger", "ccs_beat_singletonjournal"])
def test_a_ledger_or_journal_row_that_is_not_utf8_is_set_aside_and_beat_starts(
        app: Celery, make_task: Callable[..., PeriodicTask], table: str) -> None:
    from django.db import connection

    from ccs_beat.contrib.django.models import SingletonJournal, SingletonLedger
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL refuses text that is not UTF-8 in the first place")
    make_task("healthy", args="[1]")
    SingletonLedger.objects.create(name="default", state={"version": 1, "seq": 0,
                                                          "entries": {}, "pending": []})
    SingletonJournal.objects.create(ledger="default", seq=1, record={"seq": 1})
    column = "state" if table == "ccs_beat_singletonledger" else "record"
    raw_sql(f"UPDATE {table} SET {column} = CAST(x'22fffe22' AS TEXT)", [])

    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert "healthy" in beat.schedule and beat.ccs_coordinator is not None
    finally:
        beat.close()


def test_run_selected_tasks_sends_one_of_two_rows_with_one_identity(
        app: Celery, make_task: Callable[..., PeriodicTask]) -> None:
    # the cluster read cannot see what this very action sent a moment ago
    from ccs_beat.contrib.django.manual import run_now
    rows = [make_task(name, task="tests.sleep", args=f"[{n}]")
            for n, name in enumerate(["report a", "report b"])]
    for row in rows:
        SingletonSettings.objects.create(periodic_task=row, key="name")
    app.conf.ccs_beat_inspect_timeout = 0.2

    runs = run_now(app, PeriodicTask.objects.filter(pk__in=[r.pk for r in rows])
                   .select_related("singleton").order_by("name"))

    assert [bool(r.task_id) for r in runs] == [True, False]
    assert runs[1].skipped is not None and runs[0].task_id in runs[1].skipped


def test_the_last_decision_names_the_zone_its_time_is_in(settings: Any) -> None:
    from django.utils import timezone

    from ccs_beat.contrib.django.admin import SingletonPeriodicTaskAdmin
    from ccs_beat.contrib.django.models import SingletonDecision
    settings.USE_TZ, settings.TIME_ZONE = False, "Asia/Tokyo"
    from django_celery_beat.models import IntervalSchedule
    every = IntervalSchedule.objects.create(every=10, period="seconds")
    task = PeriodicTask.objects.create(name="tz", task="tests.sleep", interval=every)
    SingletonDecision.objects.create(periodic_task=task, decision="emitted",
                                     decided_at=timezone.now(), reason="r")

    from django.contrib.admin import site
    text = str(SingletonPeriodicTaskAdmin(PeriodicTask, site).singleton_last_decision(task))

    assert "Asia/Tokyo" in text and "UTC" not in text


def test_a_row_beat_cannot_send_is_left_out_whatever_its_singleton_setting(
        app: Celery, make_task: Callable[..., PeriodicTask]) -> None:
    # args that are no list cannot be sent at all: beat, ccs check and the
    # admin agree on it, singleton or not
    odd = make_task("object args", args='{"a": 1}')
    SingletonSettings.objects.create(periodic_task=odd, enabled=False)
    make_task("healthy", args="[1]")
    app.conf.beat_scheduler = SCHEDULER

    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert "healthy" in beat.schedule and "object args" not in beat.schedule
    finally:
        beat.close()
    assert any("'object args'" in problem for problem in check_app(app).problems)


@pytest.mark.parametrize(("args", "kwargs"), [("null", "{}"), ("[]", "null"), ("{}", "{}"),
                                              ("[]", "[]")])
def test_empty_arguments_written_as_null_or_the_other_container_are_sent_as_empty(
        app: Celery, make_task: Callable[..., PeriodicTask], args: str, kwargs: str) -> None:
    # as Celery sends them: json.dumps(None) from a script means "no arguments"
    make_task("empty", args=args, kwargs=kwargs)

    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert "empty" in beat.schedule
    finally:
        beat.close()


def test_run_selected_tasks_holds_back_a_row_identical_under_its_own_key_to_one_just_sent(
        app: Celery, make_task: Callable[..., PeriodicTask]) -> None:
    # the first row keys by its arguments, the second by the task name alone:
    # under the second's identity the first one just sent is identical
    from ccs_beat.contrib.django.manual import run_now
    first = make_task("a by args", task="tests.sleep", args="[1]")
    second = make_task("b by name", task="tests.sleep", args="[2]")
    SingletonSettings.objects.create(periodic_task=first)
    SingletonSettings.objects.create(periodic_task=second, key="name")
    app.conf.ccs_beat_inspect_timeout = 0.2

    runs = run_now(app, PeriodicTask.objects.filter(pk__in=[first.pk, second.pk])
                   .select_related("singleton").order_by("name"))

    assert [bool(r.task_id) for r in runs] == [True, False]


def test_run_selected_tasks_sends_a_plain_row_whose_schedule_beat_cannot_use(
        app: Celery) -> None:
    # the action sends a row now: its schedule is not read (it is beat's concern)
    from django_celery_beat.models import IntervalSchedule

    from ccs_beat.contrib.django.manual import run_now
    # fits the database's integer column, not a timedelta (at most 999,999,999 days)
    huge = IntervalSchedule.objects.create(every=2_000_000_000, period=IntervalSchedule.DAYS)
    row = PeriodicTask.objects.create(name="by hand only", task="tests.dj.noop", interval=huge)

    runs = run_now(app, PeriodicTask.objects.filter(pk=row.pk).select_related("singleton"))

    assert [(r.error, bool(r.task_id)) for r in runs] == [(None, True)]


def test_a_singleton_sent_by_hand_carries_no_expiry(
        app: Celery, make_task: Callable[..., PeriodicTask]) -> None:
    # a run by hand is outside the schedule: there is no next run to expire before
    from celery.signals import before_task_publish

    from ccs_beat.contrib.django.manual import run_now
    row = make_task("two seconds", task="tests.dj.noop")
    SingletonSettings.objects.create(periodic_task=row)
    app.conf.ccs_beat_inspect_timeout = 0.2          # no worker: on_unknown=emit sends it
    published: list[dict[str, Any]] = []

    def capture(headers: dict[str, Any] | None = None, **_: Any) -> None:
        published.append(dict(headers or {}))
    before_task_publish.connect(capture, weak=False)
    try:
        runs = run_now(app, PeriodicTask.objects.filter(pk=row.pk).select_related("singleton"))
    finally:
        before_task_publish.disconnect(capture)

    assert runs[0].task_id and published, runs
    assert published[0].get("expires") is None and "ccs_beat" in published[0]
