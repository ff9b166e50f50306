"""SingletonTask's plumbing: the sender's stamp, who is guarded, peers from a read.

Messages go through Celery's real publish path on kombu's in-memory transport;
no worker is involved (the real-cluster test is tests/integration/test_guard_cluster.py).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime

import pytest
from celery import Celery

from ccs_beat import ConfigurationError, SingletonTask, judging, task_key
from ccs_beat import task as task_module
from ccs_beat.control import STAMP_HEADER
from ccs_beat.events import GuardAction, Reason
from ccs_beat.identity import DEFAULT_KEY
from ccs_beat.judging import Copy, guard_event
from ccs_beat.snapshot import SeenTask, Snapshot, WorkerView


@pytest.fixture(scope="module")
def app():
    app = Celery("guard_unit", broker="memory://", set_as_current=True)
    app.conf.task_default_queue = "guard-unit"

    @app.task(name="t.declared", base=SingletonTask, singleton=True)
    def declared(n, tenant=None):
        return n

    @app.task(name="t.by_tenant", base=SingletonTask, singleton={"key": ["tenant"]})
    def by_tenant(n, tenant=None):
        return n

    @app.task(name="t.plain")
    def plain(n):
        return n

    @app.task(name="t.stamp_only", base=SingletonTask)
    def stamp_only(n):
        return n

    app.finalize()
    yield app
    app.close()


def published(app, send) -> dict:
    """Send through Celery's publish path and read back the message headers."""
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue("guard-unit")
        send()
        message = queue.get(timeout=2)
        message.ack()
        queue.close()
    return message.headers


def test_delay_of_a_declared_singleton_is_stamped_with_its_key_and_the_senders_clock(app):
    before = time.time()
    headers = published(app, lambda: app.tasks["t.declared"].delay(1, tenant="a"))
    stamp = headers[STAMP_HEADER]
    assert stamp["key"] == task_key("t.declared", [1], {"tenant": "a"})
    assert before <= stamp["sent_at"] <= time.time()


def test_send_task_by_name_is_stamped_like_delay(app):
    headers = published(app, lambda: app.send_task("t.declared", args=[1],
                                                    kwargs={"tenant": "a"}))
    assert headers[STAMP_HEADER]["key"] == task_key("t.declared", [1], {"tenant": "a"})


def test_the_key_follows_the_declared_key_spec(app):
    one = published(app, lambda: app.tasks["t.by_tenant"].delay(1, tenant="a"))
    two = published(app, lambda: app.tasks["t.by_tenant"].delay(2, tenant="a"))
    assert one[STAMP_HEADER]["key"] == two[STAMP_HEADER]["key"]


def test_plain_tasks_and_undeclared_singleton_tasks_are_not_stamped(app):
    assert STAMP_HEADER not in published(app, lambda: app.tasks["t.plain"].delay(1))
    assert STAMP_HEADER not in published(app, lambda: app.tasks["t.stamp_only"].delay(1))


def test_a_task_name_this_process_does_not_know_gets_the_clock_only(app):
    headers = published(app, lambda: app.send_task("elsewhere.gc", args=[1]))
    assert set(headers[STAMP_HEADER]) == {"v", "sent_at"}


def test_an_existing_stamp_from_beat_is_kept(app):
    beat_stamp = {"v": 1, "key": "from-beat", "sent_at": 1.0, "entry": "nightly"}
    headers = published(app, lambda: app.tasks["t.declared"].apply_async(
        args=[1], headers={STAMP_HEADER: beat_stamp}))
    assert headers[STAMP_HEADER] == beat_stamp


def test_arguments_that_cannot_be_keyed_are_sent_with_a_warning_naming_the_task(app, caplog):
    caplog.set_level(logging.WARNING, logger="ccs_beat.guard")
    # a datetime travels (kombu's JSON encodes it) but has no canonical key
    headers = published(app, lambda: app.tasks["t.declared"].delay(datetime(2026, 1, 1)))
    assert "key" not in headers[STAMP_HEADER]
    assert "t.declared" in caplog.text and "unguarded" in caplog.text


def test_an_invalid_singleton_declaration_names_the_task(app):
    @app.task(name="t.bad", base=SingletonTask, singleton={"overlap": "sometimes"})
    def bad():
        return None

    with pytest.raises(ConfigurationError, match=r"t\.bad.*sometimes"):
        app.tasks["t.bad"].ccs_policy()


def test_an_unguarded_call_goes_straight_to_the_body_without_reading_the_cluster(
        app, monkeypatch):
    def no_read(*_a, **_k):
        raise AssertionError("an unguarded task must not read the cluster")
    monkeypatch.setattr(task_module, "_reader", no_read)
    stamp_only = app.tasks["t.stamp_only"]
    stamp_only.push_request(id="abc", hostname="w1", called_directly=False,
                            **{STAMP_HEADER: {"v": 1, "sent_at": 1.0}})
    try:
        assert stamp_only(7) == 7
    finally:
        stamp_only.pop_request()


def test_a_guarded_task_whose_arguments_cannot_be_keyed_runs_and_reports_an_unguarded_event(
        app, monkeypatch):
    from ccs_beat.signals import decision_made
    monkeypatch.setattr(task_module, "_reader", lambda *a, **k: pytest.fail("read"))
    got = []

    def receiver(sender=None, event=None, **_):
        got.append(event)
    decision_made.connect(receiver, weak=False)
    declared = app.tasks["t.declared"]
    declared.push_request(id="odd", hostname="w1", called_directly=False)
    try:
        assert declared({1, 2}) == {1, 2}        # a set cannot be keyed: the body still runs
    finally:
        declared.pop_request()
        decision_made.disconnect(receiver)
    assert [(e.source, e.action, e.reason, e.task_id) for e in got] == [
        ("guard", "run", "unguarded", "odd")]


def test_a_direct_call_of_a_declared_singleton_is_not_guarded(app, monkeypatch):
    monkeypatch.setattr(task_module, "_reader", lambda *a, **k: pytest.fail("read"))
    assert app.tasks["t.declared"](3) == 3


def _seen(task_id, worker, *, key=None, args=(1,), start=100.0, now=101.0, sent_at=None):
    stamp = {"v": 1, "sent_at": sent_at, **({"key": key} if key else {})} if sent_at else None
    return SeenTask(id=task_id, name="t.declared", args=list(args), kwargs={}, state="active",
                    worker=worker, time_start=start, worker_now=now, stamp=stamp)


def test_peers_are_the_other_identical_active_tasks_with_their_own_clock_ages():
    key = task_key("t.declared", [1], {})
    views = {
        "w1": WorkerView("w1", (_seen("me", "w1", start=1000.0, now=1001.0),
                                _seen("other-args", "w1", args=(2,))), 1001.0, None),
        "w2": WorkerView("w2", (_seen("twin", "w2", start=50.0, now=53.0, sent_at=7.0,
                                      key=key),), 53.0, None),
    }
    copy = judging.Copy(id="me", worker="w1", name="t.declared", key=key,
                            spec=DEFAULT_KEY, stamp=None, began=1000.01)
    me, peers = judging._peers(Snapshot(taken_at=0, workers=views), copy)
    assert me == (1000.0, "me", "w1", 1000.0)   # no stamp: the time_start w1 reports
    assert [(p.task_id, p.age, p.rank) for p in peers] == [
        ("twin", 3.0, (7.0, "twin", "w2", 50.0))]


def test_task_cls_makes_every_task_of_the_app_a_singleton_task():
    app = Celery("guard_task_cls", broker="memory://", task_cls="ccs_beat:SingletonTask")

    @app.task(name="t.any")
    def anything():
        return None

    app.finalize()
    assert isinstance(app.tasks["t.any"], SingletonTask)
    assert app.tasks["t.any"].ccs_policy() is None      # guarded only when beat stamps it
    app.close()


def test_stepping_aside_sends_duplicate_skipped_with_the_winner(app):
    from ccs_beat.guard import GuardVerdict, Peer
    from ccs_beat.signals import duplicate_skipped

    winner = Peer(task_id="w-id", worker="w2", rank=(1.0, "w-id", "w2"), age=4.0)
    verdict = GuardVerdict(GuardAction.STEP_ASIDE, Reason.PEER_RUNNING,
                           "an identical task is already running", winner=winner)
    event = guard_event(verdict, Copy(id="loser", worker="w1", name="t.declared", key="k",
                                      spec=DEFAULT_KEY, stamp=None, began=0.0),
                        None, took=1.6, read_at=time.time())
    got = []

    def receiver(sender=None, **kwargs):
        got.append((sender, kwargs))
    duplicate_skipped.connect(receiver, weak=False)
    declared = app.tasks["t.declared"]
    declared.push_request(id="loser", hostname="w1", called_directly=False)
    try:
        declared._ccs_step_aside(verdict, event)
    finally:
        declared.pop_request()
        duplicate_skipped.disconnect(receiver)
    assert got == [(declared, {"signal": duplicate_skipped, "task_id": "loser",
                               "winner": winner,
                               "reason": "an identical task is already running",
                               "unknown": False, "event": event})]
    assert event.source == "guard" and event.action == "step_aside"
    assert event.reason == "peer_running" and event.blocker.task_id == "w-id"


def test_a_chord_header_member_that_steps_aside_warns_that_the_body_will_not_run(app, caplog):
    from ccs_beat.guard import GuardVerdict

    declared = app.tasks["t.declared"]
    declared.push_request(id="member", hostname="w1", called_directly=False,
                          chord={"task": "body"})
    try:
        with caplog.at_level("WARNING", logger="ccs_beat"):
            declared._ccs_step_aside(
                GuardVerdict(GuardAction.STEP_ASIDE, Reason.PEER_RUNNING, "already running"),
                None)
    finally:
        declared.pop_request()
    assert "t.declared[member] is a member of a chord's header" in caplog.text
    assert "body will not run" in caplog.text


def test_a_time_limit_shorter_than_the_guard_is_an_error_at_worker_start(app, caplog):
    from ccs_beat.guard import GuardTiming

    declared = app.tasks["t.declared"]
    declared.soft_time_limit = 2.0
    try:
        with caplog.at_level("ERROR", logger="ccs_beat"):
            task_module._check_time_limits(app, [declared], GuardTiming())
    finally:
        declared.soft_time_limit = None
    assert "t.declared has a time limit of 2s" in caplog.text
    caplog.clear()
    task_module._check_time_limits(app, [declared], GuardTiming())
    assert "time limit" not in caplog.text


# -- peers and rank, from the reply payloads workers send -------------------------

def _reply(now: float, *active: dict) -> dict:
    return {"ccs": 1, "now": now, "pool": "prefork", "peers": None,
            "active": list(active), "reserved": [], "scheduled": []}


def _request(task_id: str, worker: str, time_start: float, pid: int = 1, **extra) -> dict:
    return {"id": task_id, "name": "t.declared", "args": [1], "kwargs": {},
            "time_start": time_start, "worker_pid": pid, "stamp": None, **extra}


def _verdict(replies: dict, task_id: str, worker: str, began: float, missing=()):
    from ccs_beat.guard import GuardTiming
    from ccs_beat.replies import parse_reply
    snap = Snapshot(taken_at=began, workers={w: parse_reply(w, body)
                                             for w, body in replies.items()},
                    missing=frozenset(missing))
    copy = judging.Copy(id=task_id, worker=worker, name="t.declared",
                            key=task_key("t.declared", [1], {}), spec=DEFAULT_KEY,
                            stamp=None, began=began)
    return judging.judge_copy(snap, copy, GuardTiming(), "emit")[0]


def test_a_task_whose_own_workers_reply_is_lost_ranks_itself_as_the_others_rank_it():
    # unstamped A starts at 0.0 on w1, B at 0.5 on w2; w1's reply to A's read is lost.
    # Every observer must rank A at 0.0, so exactly one of the two runs.
    a, b = _request("A", "w1", 0.0), _request("B", "w2", 0.5)
    a_verdict = _verdict({"w2": _reply(2.5, b)}, "A", "w1", began=0.01, missing={"w1"})
    b_verdict = _verdict({"w1": _reply(3.0, a), "w2": _reply(3.0, b)}, "B", "w2", began=0.51)

    assert [a_verdict.run, b_verdict.run] == [True, False], (a_verdict, b_verdict)


def test_a_copy_redelivered_beside_its_original_on_one_worker_steps_aside():
    # acks_late: the broker hands the message out again while the original
    # runs; both requests are active on w1 under one id and one stamp
    stamp = {"v": 1, "key": task_key("t.declared", [1], {}), "sent_at": -1.0}
    original = _request("x", "w1", 0.0, pid=4242, stamp=stamp)
    copy = _request("x", "w1", 60.0, pid=os.getpid(), stamp=stamp)

    verdict = _verdict({"w1": _reply(61.5, original, copy)}, "x", "w1", began=60.01)

    assert not verdict.run
    assert verdict.winner is not None and verdict.winner.task_id == "x"
    assert verdict.winner.age == pytest.approx(61.5)


def test_a_copy_redelivered_at_once_ranks_after_its_original():
    # both still deciding (a quick redelivery): the older request runs, the copy
    # skips; each guard knows itself by its pool process (this test's process)
    here, elsewhere = os.getpid(), os.getpid() + 1

    copy_sees = {"w1": _reply(1.8, _request("x", "w1", 0.0, pid=elsewhere),
                              _request("x", "w1", 0.3, pid=here))}
    original_sees = {"w1": _reply(1.5, _request("x", "w1", 0.0, pid=here),
                                  _request("x", "w1", 0.3, pid=elsewhere))}

    assert not _verdict(copy_sees, "x", "w1", began=0.31).run
    assert _verdict(original_sees, "x", "w1", began=0.01).run
