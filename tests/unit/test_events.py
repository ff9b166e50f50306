"""Decision events: the one path reports each decision once, the same record to
the log record, the signals and the event file.

The coordinator is driven with a canned snapshot and a publish function that
records what it was given (no broker: tests/integration covers real ones).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import schedule

from ccs_beat import signals
from ccs_beat.coordinator import Coordinator
from ccs_beat.events import BeatAction, DecisionEvent, Reason
from ccs_beat.identity import task_key
from ccs_beat.ledger_store import MemoryLedgerStore
from ccs_beat.reporting import read_events
from ccs_beat.snapshot import SeenTask, Snapshot, WorkerView


class CannedReader:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def read(self, names=None, ids=None) -> Snapshot:
        return self.snap

    def close(self) -> None:
        pass


def cluster(*tasks: SeenTask) -> Snapshot:
    return Snapshot(taken_at=0, workers={
        "w1": WorkerView(hostname="w1", tasks=tasks, now=0.0, peers=None)})


def make_entry(app: Celery, name: str = "gc", options: dict | None = None) -> ScheduleEntry:
    return ScheduleEntry(name=name, task="events_test.gc", schedule=schedule(timedelta(seconds=60)),
                         args=(1,), options={"singleton": True, **(options or {})}, app=app)


def publisher(sent: list):
    def publish(sending):
        sent.append(sending)
        return SimpleNamespace(id=sending.options["task_id"])
    return publish


@pytest.fixture
def app(tmp_path) -> Celery:
    app = Celery("t", broker="memory://", set_as_current=False)
    app.conf.ccs_beat_event_log = str(tmp_path / "events.jsonl")
    return app


def coordinator(app: Celery, snap: Snapshot, store=None) -> Coordinator:
    return Coordinator(app, sender="beat", reader=CannedReader(snap),
                       store=store or MemoryLedgerStore())


def test_an_emission_is_one_event_in_the_log_record_the_signal_and_the_file(app, caplog):
    seen = []

    def receiver(sender=None, event=None, **_):
        seen.append(event)
    signals.decision_made.connect(receiver, weak=False)
    sent: list = []
    try:
        with caplog.at_level(logging.INFO, logger="ccs_beat"):
            event = coordinator(app, cluster()).handle(make_entry(app), publisher(sent))
    finally:
        signals.decision_made.disconnect(receiver)

    assert event is not None and event.action is BeatAction.EMIT
    assert event.reason is Reason.NOTHING_IDENTICAL and event.entry == "gc"
    assert event.task_id == sent[0].options["task_id"]
    assert event.key == task_key("events_test.gc", [1], {}) and event.expires_in is not None
    assert seen == [event]
    [record] = [r for r in caplog.records if hasattr(r, "ccs_event")]
    assert record.ccs_event == event.as_dict()
    assert record.funcName == "_report_sent"            # the decision's caller, not report()
    assert list(read_events(app.conf.ccs_beat_event_log)) == [event]


def test_a_skip_names_its_blocker_and_its_reason_code(app):
    blocker = SeenTask(id="b-1", name="events_test.gc", args=[1], kwargs={}, state="active",
                       worker="w1", time_start=0.0, worker_now=3.0)
    entry = make_entry(app)
    sent: list = []
    event = coordinator(app, cluster(blocker)).handle(entry, publisher(sent))
    assert sent == []
    assert event is not None and event.action is BeatAction.SKIP
    assert event.reason is Reason.IDENTICAL_IN_CLUSTER
    assert event.blocker is not None and (event.blocker.task_id, event.blocker.worker,
                                          event.blocker.state) == ("b-1", "w1", "active")
    [line] = list(read_events(app.conf.ccs_beat_event_log))
    assert line.blocker == event.blocker and line.read_age is not None


def test_a_failed_publish_is_withdrawn_and_reports_nothing(app):
    store = MemoryLedgerStore()
    ccs = coordinator(app, cluster(), store)

    def broken(sending):
        raise ConnectionError("broker away")
    with pytest.raises(ConnectionError):
        ccs.handle(make_entry(app), broken)
    assert ccs.ledger.entries == {}
    assert [sorted(r) for r in store.read_raw()[1]] == [
        ["emission", "entry", "seq"], ["entry", "seq", "withdraw"]]
    assert list(read_events(app.conf.ccs_beat_event_log)) == []


def test_an_event_file_that_cannot_be_written_is_named_once_and_decisions_go_on(
        app, tmp_path, caplog):
    app.conf.ccs_beat_event_log = str(tmp_path / "no-such-dir" / "events.jsonl")
    ccs = coordinator(app, cluster())
    with caplog.at_level(logging.WARNING, logger="ccs_beat"):
        for name in ("a", "b"):
            assert ccs.handle(make_entry(app, name, {"singleton": {"key": "name"}}),
                              publisher([])) is not None
            ccs.end_burst()
    warnings = [r for r in caplog.records if "cannot append decision events" in r.getMessage()]
    assert len(warnings) == 1


def test_a_torn_or_foreign_line_in_the_event_file_is_skipped(tmp_path):
    good = DecisionEvent(source="guard", action="run", reason="no_peer", detail="x", at=1.0)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(good.as_dict()), '{"source": "beat"', "[1, 2]",
                               json.dumps({"foreign": True})]) + "\n", encoding="utf-8")
    assert list(read_events(path)) == [good]


def test_an_event_survives_its_json_line_unchanged(app):
    blocker = SeenTask(id="b-1", name="events_test.gc", args=[1], kwargs={}, state="reserved",
                       worker="w1")
    event = coordinator(app, cluster(blocker)).handle(make_entry(app), publisher([]))
    assert event is not None
    again = DecisionEvent.from_dict(json.loads(json.dumps(event.as_dict())))
    assert again == event and again.action == "skip" and again.reason == "identical_in_cluster"


def test_a_failing_on_decision_hook_does_not_make_a_sent_message_look_unsent(app, caplog):
    def broken_hook(entry, event):
        raise RuntimeError("admin table away")
    ccs = Coordinator(app, sender="beat", reader=CannedReader(cluster()),
                      on_decision=broken_hook)
    sent: list = []
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        event = ccs.handle(make_entry(app), publisher(sent))
    assert event is not None and event.action is BeatAction.EMIT and len(sent) == 1
    assert [e.task_id for e in ccs.ledger.entries["gc"]] == [event.task_id]
    assert any("on_decision hook failed" in r.getMessage() and r.exc_info
               for r in caplog.records)


def test_a_line_that_is_not_utf8_is_skipped_and_the_rest_read(tmp_path):
    good = DecisionEvent(source="beat", action="emit", reason="nothing_identical",
                         detail="x", at=1.0)
    path = tmp_path / "events.jsonl"
    line = json.dumps(good.as_dict()).encode()
    path.write_bytes(line + b"\n" + b'{"source": "beat", "act\xe9\n' + line + b"\n")
    assert list(read_events(path)) == [good, good]
