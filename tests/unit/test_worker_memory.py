"""What a worker remembers for later reads: runs that covered waiting
requests (``ccs_beat.covering``) and the beat emissions it received
(``ccs_beat.control``), and how replies carry them to the guard and to beat."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from types import SimpleNamespace

import pytest

from ccs_beat import control, covering, skipping
from ccs_beat.cluster import GarbledReply, Snapshot, parse_reply
from ccs_beat.guard import GuardTiming
from ccs_beat.identity import DEFAULT_KEY, task_key
from ccs_beat.task import Copy, judge_copy

KEY = task_key("t.declared", [1], {})


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(skipping, "_folder", str(tmp_path))
    return tmp_path


def request(task_id: str, **extra) -> dict:
    return {"id": task_id, "name": "t.declared", "args": [1], "kwargs": {},
            "time_start": None, "worker_pid": 7, "stamp": None, **extra}


def reply(now: float = 100.0, **lists) -> dict:
    body = {"ccs": 1, "now": now, "pool": "prefork", "peers": None, "active": [],
            "reserved": [], "scheduled": []}
    body.update(lists)
    return body


def copy(task_id: str, worker: str = "w1") -> Copy:
    return Copy(id=task_id, worker=worker, name="t.declared", key=KEY, spec=DEFAULT_KEY,
                stamp=None, began=100.0)


def snapshot(**replies) -> Snapshot:
    return Snapshot(taken_at=100.0, workers={w: parse_reply(w, body)
                                             for w, body in replies.items()})


# -- covering ---------------------------------------------------------------------

def test_a_run_covers_the_identical_requests_its_read_saw_waiting():
    snap = snapshot(w1=reply(active=[request("A", time_start=99.0)],
                             reserved=[request("B"), request("other", args=[2])]),
                    w2=reply(reserved=[request("C")]))
    verdict, covered = judge_copy(snap, copy("A"), GuardTiming(), "emit")
    assert verdict.run
    assert covered == {"B", "C"}          # not the one with other arguments, not itself


def test_a_covered_request_steps_aside_for_the_run_even_after_it_ended():
    snap = snapshot(w1=reply(active=[request("B", time_start=99.0)],
                             covered=[{"by": "A", "name": "t.declared", "ids": ["B"],
                                       "ended": True}]))
    verdict, covered = judge_copy(snap, copy("B"), GuardTiming(), "emit")
    assert not verdict.run and covered == frozenset()
    assert verdict.winner.task_id == "A" and "A" in verdict.reason


def test_a_request_nobody_covered_runs_when_nothing_identical_is_running():
    snap = snapshot(w1=reply(active=[request("D", time_start=99.0)],
                             covered=[{"by": "A", "name": "t.declared", "ids": ["B"],
                                       "ended": True}]))
    assert judge_copy(snap, copy("D"), GuardTiming(), "emit")[0].run


def test_a_worker_reports_a_record_while_the_run_is_active_and_after_it_ended(folder):
    pid = os.getpid()
    covering.record("A", "t.declared", ["B", "C"])
    assert covering.reported([("A", pid)], None) == [
        {"by": "A", "name": "t.declared", "ids": ["B", "C"], "sent": {}, "ended": False}]
    covering.ended("A")
    assert covering.reported([], None) == [
        {"by": "A", "name": "t.declared", "ids": ["B", "C"], "sent": {}, "ended": True}]
    assert covering.reported([], {"t.other"}) == []          # filtered by task name


def test_a_run_that_vanished_without_ending_covers_nothing(folder):
    covering.record("A", "t.declared", ["B"])
    assert covering.reported([], None) == []                 # pool process died mid-body
    assert not any(folder.iterdir())


def test_an_ended_record_is_forgotten_after_the_memory_window(folder):
    covering.record("A", "t.declared", ["B"])
    covering.ended("A")
    later = time.time() + covering.REMEMBER_FOR + 1
    assert covering.reported([], None, now=later) == []
    assert not any(folder.iterdir())


def test_a_run_that_covered_nothing_writes_no_record(folder):
    covering.record("A", "t.declared", [])
    assert not any(folder.iterdir())


def test_skip_marks_and_cover_records_share_the_folder_without_removing_each_other(folder):
    covering.record("A", "t.declared", ["B"])
    skipping.mark("B")
    assert skipping.marked([("B", os.getpid())]) == {("B", os.getpid())}
    assert skipping.marked([]) == set()                      # B's mark is stale now
    assert covering.reported([("A", os.getpid())], None)[0]["by"] == "A"


@pytest.mark.parametrize("covered", [
    "A", [{"by": 1, "name": "t", "ids": [], "ended": True}],
    [{"by": "A", "name": "t", "ids": "B", "ended": True}],
    [{"by": "A", "name": "t", "ids": ["B"], "ended": "yes"}],
])
def test_a_garbled_covered_list_makes_the_reply_unusable(covered):
    with pytest.raises(GarbledReply, match="covered"):
        parse_reply("w1", reply(covered=covered))


# -- beat emissions a worker received ------------------------------------------------

@pytest.fixture
def received(monkeypatch):
    monkeypatch.setattr(control, "_received", OrderedDict())
    return control._received


def received_request(task_id: str, stamp) -> SimpleNamespace:
    return SimpleNamespace(id=task_id, request_dict={control.STAMP_HEADER: stamp})


def started(task_id: str, stamp) -> None:
    """What the pool process does as the body is about to run."""
    control._note_started(task_id=task_id,
                          task=SimpleNamespace(request=SimpleNamespace(ccs_beat=stamp)))


def test_a_worker_says_which_asked_emissions_it_received_started_and_no_longer_holds(
        received, folder):
    for task_id in ("E1", "E2", "M"):
        stamp = {"key": "k"} if task_id == "M" else {"key": "k", "entry": "gc"}  # M: not beat's
        control._note_received(request=received_request(task_id, stamp))
        started(task_id, stamp)
    assert control._done(["E1", "E2", "M", "never"], held={"E2"}) == ["E1"]
    assert control._done(None, held=set()) == []


def test_a_received_emission_that_never_started_is_not_done(received, folder):
    # a prefetched message goes back to the queue when the connection is lost
    # or the worker shuts down warm: the worker no longer holds it, but it is
    # still queued, and beat must keep counting it
    control._note_received(request=received_request("E1", {"entry": "gc"}))
    assert control._done(["E1"], held=set()) == []


def test_the_memory_of_received_emissions_is_bounded(received, folder, monkeypatch):
    monkeypatch.setattr(control, "MAX_RECEIVED", 3)
    for i in range(5):
        control._note_received(request=received_request(f"E{i}", {"entry": "gc"}))
        started(f"E{i}", {"entry": "gc"})
    assert list(received) == ["E2", "E3", "E4"]
    assert len(list(folder.iterdir())) == 3      # the start marks of forgotten ones go too


def test_done_ids_reach_the_snapshot_and_a_garbled_list_is_named():
    snap = snapshot(w1=reply(done=["E1"]))
    assert snap.done("E1") and not snap.done("E2")
    with pytest.raises(GarbledReply, match="done"):
        parse_reply("w1", reply(done=[1]))


def test_a_run_that_asked_for_a_retry_has_served_nobody_yet(folder):
    from celery import Celery
    from celery.exceptions import Retry

    from ccs_beat import SingletonTask

    app = Celery("memory_retry", broker="memory://", set_as_current=False)

    @app.task(name="t.retrying", base=SingletonTask, singleton=True)
    def retrying():
        raise Retry("again")

    @app.task(name="t.failing", base=SingletonTask, singleton=True)
    def failing():
        raise ValueError("boom")

    for task, ended in ((app.tasks["t.retrying"], False), (app.tasks["t.failing"], True)):
        covering.record("A", task.name, ["B"])
        with pytest.raises((Retry, ValueError)):
            task._ccs_run("A", (), {})
        assert [r["ended"] for r in covering.reported([], None)] == ([True] if ended else [])
    app.close()


def test_a_covered_copy_still_deciding_wins_nothing_and_is_covered_by_the_winner():
    # B (covered by an earlier run) and C are deciding together; B ranks first
    # but will step aside for its cover: C must not step aside for B
    b = request("B", time_start=99.5, stamp={"sent_at": 1.0})
    c = request("C", time_start=99.6, stamp={"sent_at": 2.0})
    snap = snapshot(w1=reply(active=[b, c], covered=[
        {"by": "A", "name": "t.declared", "ids": ["B"], "ended": True}]))
    verdict, covered = judge_copy(snap, Copy(id="C", worker="w1", name="t.declared", key=KEY,
                                             spec=DEFAULT_KEY, stamp={"sent_at": 2.0},
                                             began=99.6), GuardTiming(), "emit")
    assert verdict.run, verdict
    assert covered == {"B"}          # seen deciding: sent before this read
