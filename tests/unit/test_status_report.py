"""The ``celery ccs status`` report, built from plain cluster data."""

from __future__ import annotations

import json
import shelve
import time

import pytest
from celery import Celery

from ccs_beat.identity import DEFAULT_KEY, KeySpec, task_key
from ccs_beat.ledger import Emission, Ledger
from ccs_beat.policy import Policy
from ccs_beat.scheduler import SingletonScheduler
from ccs_beat.snapshot import SeenTask, Snapshot, WorkerView
from ccs_beat.status import build_report, read_ledger, render, render_json
from ccs_beat.stores.file import LEDGER_KEY

NOW = 1_000_000.0


def seen(id_, name="jobs.gc", state="active", worker="w1@h", stamp=None, kwargs=None):
    return SeenTask(id=id_, name=name, args=[], kwargs=kwargs or {}, state=state,
                    worker=worker, time_start=NOW - 5 if state == "active" else None,
                    worker_now=NOW, stamp=stamp)


def snapshot(*views, missing=(), garbled=None):
    return Snapshot(taken_at=NOW, elapsed=0.004,
                    workers={v.hostname: v for v in views}, missing=frozenset(missing),
                    garbled=garbled or {}, timeout=1.0)


def view(host, *tasks, peers=()):
    return WorkerView(hostname=host, tasks=tuple(tasks), now=NOW, peers=frozenset(peers))


def test_a_stamped_task_is_listed_with_its_stamp_key():
    snap = snapshot(view("w1@h", seen("a", stamp={"key": "jobs.gc:k1", "sent_at": NOW - 9})))
    report = build_report(snap, {}, {}, None, None, "none", now=NOW)
    assert [(r.id, r.key, r.state, r.source) for r in report.rows] == [
        ("a", "jobs.gc:k1", "active", "stamp")]
    assert report.rows[0].age == 5.0


def test_an_unstamped_task_of_a_singleton_entry_gets_the_entry_key():
    task = seen("b", name="users.update_all", state="reserved", kwargs={"day": 1})
    snap = snapshot(view("w1@h", task))
    report = build_report(snap, {"users.update_all": ("daily", Policy())}, {}, None, None, None,
                          now=NOW)
    assert report.rows[0].key == task_key("users.update_all", [], {"day": 1}, DEFAULT_KEY)
    assert report.rows[0].source == "entry daily"


def test_a_declared_singleton_task_is_listed_and_plain_tasks_are_not():
    snap = snapshot(view("w1@h", seen("c", name="reports.build"), seen("d", name="ops.ping")))
    report = build_report(snap, {}, {"reports.build": Policy(key=KeySpec(kind="name"))},
                          None, None, None, now=NOW)
    assert [(r.id, r.key) for r in report.rows] == [("c", "reports.build")]


def test_workers_that_peers_know_but_did_not_answer_are_named_silent():
    snap = snapshot(view("w1@h", peers=("w2@h", "w3@h")), missing=("w4@h",),
                    garbled={"w3@h": "reply is not a dict"})
    report = build_report(snap, {}, {}, None, None, None, now=NOW)
    assert report.answered == ["w1@h"]
    assert report.silent == ["w2@h", "w4@h"]
    text = render(report)
    assert "no reply from: w2@h, w4@h" in text
    assert "unusable reply from w3@h: reply is not a dict" in text


def test_the_ledger_is_shown_with_ages_and_expiry():
    ledger = Ledger()
    ledger.record("gc", Emission(task_id="t1", key="k", sent_at=NOW - 3, expires_at=NOW + 7))
    report = build_report(snapshot(), {}, {}, ledger, "schedule file s", None, now=NOW)
    assert [(r.entry, r.task_id, r.sent_ago, r.expires_in) for r in report.ledger] == [
        ("gc", "t1", 3.0, 7.0)]
    text = render(report)
    assert "Beat ledger (schedule file s): 1 emission(s)" in text
    assert "3.0s ago" in text and "7.0s" in text
    assert json.loads(render_json(report))["ledger"][0]["task_id"] == "t1"


def test_a_broker_failure_is_reported_first_without_a_list_of_tasks():
    snap = Snapshot(taken_at=NOW, failure="ConnectionRefusedError(111)", timeout=1.0)
    report = build_report(snap, {}, {}, None, None, "not reachable", now=NOW)
    text = render(report)
    assert text.splitlines()[0] == "Could not read the cluster: ConnectionRefusedError(111)"
    assert "none running" not in text and "Singleton tasks" not in text
    assert (report.outcome, report.exit_code) == ("failed", 4)
    assert json.loads(render_json(report))["outcome"] == "failed"


def test_no_worker_answering_is_not_reported_as_none_running():
    report = build_report(Snapshot(taken_at=NOW, timeout=0.5), {}, {}, None, None, "x",
                          now=NOW)
    text = render(report)
    assert text.splitlines()[0].startswith("No worker answered within 0.5s")
    assert "none running" not in text and "Singleton tasks" not in text
    assert (report.outcome, report.exit_code) == ("no_worker", 3)


def test_a_silent_or_unusable_worker_makes_the_answer_partial():
    report = build_report(snapshot(view("w1@h"), missing=("w2@h",)), {}, {}, None, None, "x",
                          now=NOW)
    assert report.silent == ["w2@h"]
    assert (report.outcome, report.exit_code) == ("partial", 5)
    assert "from the workers that answered" in render(report)


def test_a_full_answer_exits_zero():
    view = WorkerView(hostname="w1@h", tasks=(), now=NOW, peers=frozenset({"w1@h"}))
    report = build_report(Snapshot(taken_at=NOW, workers={"w1@h": view}, timeout=1.0),
                          {}, {}, None, None, "x", now=NOW)
    assert (report.outcome, report.exit_code) == ("complete", 0)
    assert "none running, reserved or scheduled" in render(report)


@pytest.mark.parametrize("sent_at", [10**400, float("-inf"), float("nan")])
def test_a_forged_stamp_clock_shows_no_age_and_keeps_the_json_strict(sent_at):
    task = seen("a", state="scheduled", stamp={"key": "jobs.gc:k", "sent_at": sent_at})
    report = build_report(snapshot(view("w1@h", task)), {}, {}, None, None, "x", now=NOW)
    assert report.rows[0].age is None
    json.loads(render_json(report), parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))


class DjangoishScheduler(SingletonScheduler):
    """A file-based scheduler whose name mentions Django."""


def test_status_finds_the_ledger_of_a_file_scheduler_whatever_its_name(tmp_path):
    app = Celery("status_name", broker="memory://", set_as_current=False)
    app.conf.beat_scheduler = f"{__name__}:DjangoishScheduler"
    path = tmp_path / "celerybeat-schedule"
    ledger = Ledger()
    ledger.record("gc", Emission(task_id="t-1", key="k", sent_at=time.time()))
    with shelve.open(str(path)) as store:
        store[LEDGER_KEY] = ledger.to_state()

    found, source, error = read_ledger(app, str(path))

    assert error is None, error
    assert found is not None and found.entries["gc"][0].task_id == "t-1"
    assert source == f"schedule file {path}"


def test_status_names_a_scheduler_it_cannot_import():
    app = Celery("status_name", broker="memory://", set_as_current=False)

    found, _, error = read_ledger(app, None, "no_such_module:Scheduler")

    assert found is None and error is not None and "no_such_module:Scheduler" in error


@pytest.mark.parametrize("seen_on", [7, {"a": 1}, ["w1"]])
def test_a_forged_ledger_is_shown_not_a_crash(seen_on):
    ledger = Ledger.from_state({"version": 1, "seq": 0, "entries": {"gc": [
        {"task_id": "a", "key": "k", "sent_at": NOW - 10, "expires_at": NOW + 60,
         "seen_on": seen_on}]}})
    report = build_report(snapshot(view("w1@h")), {}, {}, ledger, "redis x", None, now=NOW)

    text = render(report)

    assert "a" in [row.task_id for row in report.ledger] and "gc" in text
    json.loads(render_json(report))


def test_status_of_a_plain_scheduler_opens_no_schedule_file_it_was_not_given(
        tmp_path, monkeypatch):
    # a schedule file is a pickle: one lying in the working directory must not
    # be opened for an app whose beat is not a ccs_beat beat
    monkeypatch.chdir(tmp_path)
    probe = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (open, (str(probe), "w"))
    with shelve.open(str(tmp_path / "celerybeat-schedule")) as store:
        store[LEDGER_KEY] = Trap()
    app = Celery("status_plain", broker="memory://", set_as_current=False)

    found, _, error = read_ledger(app, None)

    assert found is None and "not a ccs_beat scheduler" in error
    assert not probe.exists()


def test_a_malformed_task_in_a_reply_is_named_and_makes_the_answer_partial():
    from ccs_beat.replies import parse_reply
    body = {"ccs": 1, "now": NOW, "peers": None, "reserved": [], "scheduled": [],
            "active": [{"id": "odd", "name": "jobs.gc", "args": 5, "kwargs": {}},
                       {"id": "fine", "name": "jobs.gc", "args": [], "kwargs": {},
                        "time_start": NOW - 5}]}
    report = build_report(snapshot(parse_reply("w1@h", body)), {}, {"jobs.gc": Policy()},
                          None, None, None, now=NOW)

    assert report.outcome == "partial"
    assert [row.id for row in report.rows] == ["fine"]
    assert "  unusable task odd (jobs.gc) in w1@h's reply: args 5, not a list" in \
        render(report).splitlines()
