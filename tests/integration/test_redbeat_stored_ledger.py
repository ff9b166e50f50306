"""Everything in redbeat's Redis is data: anyone who can write that Redis can
write anything there. A ledger or journal value the JSON decoder cannot read is
set aside with an ERROR naming its key; an entry whose task is not a name is
named and never stops beat; ``ccs check`` names what it cannot read
(SingletonRedBeatScheduler driven in the test process on real Redis)."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
import redis
from celery.schedules import schedule
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import acquire_distributed_beat_lock

from ccs_beat.contrib.redbeat import SingletonRedBeatScheduler, journal_key, ledger_key
from tests.conftest import REDBEAT_DB

pytestmark = pytest.mark.timeout(60)

#: nested past Python's JSON decoder
DEEP = "[" * 100_000 + "]" * 100_000


def start_and_send(app, published: list[str], extra_ticks: int = 0) -> None:
    """Start a beat holding redbeat's lock and tick until it has sent something."""
    beat = SingletonRedBeatScheduler(app=app, lazy=False)
    try:
        acquire_distributed_beat_lock(SimpleNamespace(scheduler=beat))
        deadline = time.monotonic() + 20
        while not published:
            assert time.monotonic() < deadline, "beat sent nothing"
            time.sleep(min(beat.tick(), 0.2))
        for _ in range(extra_ticks):
            beat.tick()
    finally:
        beat.close()


@pytest.mark.parametrize("where", ["ledger", "journal"])
def test_a_ledger_or_journal_value_nested_too_deep_is_set_aside_and_beat_starts(
        app, published, caplog, where):
    from redbeat.schedulers import ensure_conf
    ensure_conf(app)
    client = redis.Redis.from_url(REDBEAT_DB)
    if where == "ledger":
        client.set(ledger_key(app), DEEP)
        key = ledger_key(app)
    else:
        client.rpush(journal_key(app), DEEP)
        key = journal_key(app)
    RedBeatSchedulerEntry("gc", "tests.sleep", schedule(0.5), args=[1], app=app,
                          options={"singleton": True}).save()

    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        start_and_send(app, published)
    assert any(key in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_ccs_check_of_many_redbeat_entries_asks_the_broker_once(app):
    # validating entry by entry must not open a broker connection per entry
    from ccs_beat.checks import check_app
    for i in range(5):
        RedBeatSchedulerEntry(f"job-{i}", "tests.sleep", schedule(60), args=[i], app=app,
                              options={"singleton": True}).save()
    opened = []
    real = app.connection_for_read

    def counting(*args, **kwargs):
        opened.append(1)
        return real(*args, **kwargs)
    app.connection_for_read = counting

    report = check_app(app, "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler")

    assert report.problems == []
    assert sorted(report.policies) == [f"job-{i}" for i in range(5)]
    assert len(opened) == 1



def forge_task(app, name: str, value) -> None:
    """Write ``value`` as the task of redbeat entry ``name``, past redbeat's API."""
    client = redis.Redis.from_url(REDBEAT_DB)
    key = RedBeatSchedulerEntry.generate_key(app, name)
    definition = json.loads(client.hget(key, "definition"))
    definition["task"] = value
    client.hset(key, "definition", json.dumps(definition))


@pytest.mark.parametrize("task", [["tests.sleep"], {"a": 1}, 5])
def test_an_entry_whose_task_is_not_a_name_is_named_and_beat_keeps_sending(
        app, published, caplog, task):
    for name in ("healthy", "odd"):
        RedBeatSchedulerEntry(name, "tests.sleep", schedule(0.5), args=[1], app=app,
                              options={"singleton": True}).save()
    forge_task(app, "odd", task)
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        start_and_send(app, published, extra_ticks=1)
    assert any("'odd'" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_ccs_check_names_an_entry_whose_task_is_not_a_name(app):
    from ccs_beat.checks import check_app
    RedBeatSchedulerEntry("odd", "tests.sleep", schedule(60), args=[1], app=app).save()
    forge_task(app, "odd", ["tests.sleep"])

    report = check_app(app, "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler")

    assert any("'odd'" in problem and "task" in problem for problem in report.problems), \
        report.problems
    assert "odd" not in report.policies


def test_ccs_check_names_a_schedule_member_that_is_not_text(app):
    from redbeat.schedulers import ensure_conf

    from ccs_beat.checks import check_app
    RedBeatSchedulerEntry("healthy", "tests.sleep", schedule(60), args=[1], app=app).save()
    ensure_conf(app)
    redis.Redis.from_url(REDBEAT_DB).zadd(
        app.redbeat_conf.schedule_key, {app.redbeat_conf.key_prefix.encode() + b"\xff\xfe": 1})

    report = check_app(app, "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler")

    assert "healthy" in report.policies
    assert any("cannot be read" in problem for problem in report.problems), report.problems


@pytest.mark.parametrize("where", ["ledger", "journal"])
def test_a_ledger_or_journal_value_that_is_not_utf8_is_set_aside_and_beat_starts(
        app, published, caplog, where):
    from redbeat.schedulers import ensure_conf
    ensure_conf(app)
    client = redis.Redis.from_url(REDBEAT_DB)
    key = ledger_key(app) if where == "ledger" else journal_key(app)
    if where == "ledger":
        client.set(key, b"\xff\xfe")
    else:
        client.rpush(key, b"\xff\xfe")
    RedBeatSchedulerEntry("gc", "tests.sleep", schedule(0.5), args=[1], app=app,
                          options={"singleton": True}).save()

    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        start_and_send(app, published)
    assert any(key in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_a_schedule_member_that_is_not_utf8_does_not_stop_beat(app, published):
    from redbeat.schedulers import ensure_conf
    ensure_conf(app)
    RedBeatSchedulerEntry("gc", "tests.sleep", schedule(0.5), args=[1], app=app,
                          options={"singleton": True}).save()
    redis.Redis.from_url(REDBEAT_DB).zadd(   # due far in the future: stock redbeat skips it
        app.redbeat_conf.schedule_key, {app.redbeat_conf.key_prefix.encode() + b"\xff": 4e12})

    start_and_send(app, published)


def test_a_schedule_member_cannot_forge_a_line_of_ccs_check(app):
    from redbeat.schedulers import ensure_conf

    from ccs_beat.checks import check_app
    ensure_conf(app)
    forged = "nightly-gc: overlap=skip key=name on_unknown=emit"
    redis.Redis.from_url(REDBEAT_DB).zadd(
        app.redbeat_conf.schedule_key, {app.redbeat_conf.key_prefix + "x\n" + forged: 1})

    report = check_app(app, "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler")

    assert report.problems
    assert not any(line.startswith(forged)
                   for problem in report.problems for line in problem.splitlines())


def test_ccs_check_with_redbeats_redis_away_reports_it(app):
    from ccs_beat.checks import check_app
    app.conf.redbeat_redis_url = "redis://127.0.0.1:1/0"   # nothing listens there

    report = check_app(app, "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler")

    assert any("cannot read" in problem for problem in report.problems), report.problems
