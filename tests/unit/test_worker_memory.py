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
from ccs_beat.guard import GuardTiming
from ccs_beat.identity import DEFAULT_KEY, task_key
from ccs_beat.judging import Copy, judge_copy
from ccs_beat.replies import GarbledReply, parse_reply
from ccs_beat.snapshot import Snapshot

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
    assert verdict.winner.task_id == "A" and "A" in verdict.detail


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
    (record,) = covering.reported([], None)
    assert record["ended"] and 0 <= record["age"] < 5
    assert {k: v for k, v in record.items() if k != "age"} == {
        "by": "A", "name": "t.declared", "ids": ["B", "C"], "sent": {}, "ended": True}
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


def finished(task_id: str, stamp, state: str = "SUCCESS", retval=None) -> None:
    """What the pool process does once the body returned or raised."""
    control._note_finished(task_id=task_id, state=state, retval=retval,
                           task=SimpleNamespace(request=SimpleNamespace(ccs_beat=stamp)))


def test_a_worker_says_which_asked_emissions_it_received_finished_and_no_longer_holds(
        received, folder):
    for task_id in ("E1", "E2", "M"):
        stamp = {"key": "k"} if task_id == "M" else {"key": "k", "entry": "gc"}  # M: not beat's
        control._note_received(request=received_request(task_id, stamp))
        finished(task_id, stamp)
    assert control._done(["E1", "E2", "M", "never"], held={"E2"}) == ["E1"]
    assert control._done(None, held=set()) == []


@pytest.mark.parametrize(("state", "requeue", "done"), [
    ("RETRY", None, False), ("REJECTED", True, False), ("REJECTED", False, True)])
def test_an_emission_that_went_back_to_the_queue_is_not_done(received, folder, state,
                                                             requeue, done):
    # a retry's next attempt, or a rejected message requeued, waits in the
    # broker: beat must keep counting it; a reject that drops it ends it
    from celery.exceptions import Reject

    control._note_received(request=received_request("E1", {"entry": "gc"}))
    finished("E1", {"entry": "gc"}, state=state,
             retval=Reject("no", requeue=requeue) if requeue is not None else None)
    assert control._done(["E1"], held=set()) == (["E1"] if done else [])


def test_a_received_emission_that_never_finished_is_not_done(received, folder):
    # a prefetched message goes back to the queue when the connection is lost
    # or the worker shuts down warm, and a body whose process was killed can be
    # requeued (acks_late): the worker no longer holds it, but it may still be
    # queued, and beat must keep counting it
    control._note_received(request=received_request("E1", {"entry": "gc"}))
    assert control._done(["E1"], held=set()) == []


def test_the_memory_of_received_emissions_is_bounded(received, folder, monkeypatch):
    monkeypatch.setattr(control, "MAX_RECEIVED", 3)
    for i in range(5):
        control._note_received(request=received_request(f"E{i}", {"entry": "gc"}))
        finished(f"E{i}", {"entry": "gc"})
    assert list(received) == ["E2", "E3", "E4"]
    assert len(list(folder.iterdir())) == 3      # the marks of forgotten ones go too


def test_done_ids_reach_the_snapshot_and_a_garbled_list_is_named():
    snap = snapshot(w1=reply(done=["E1"]))
    assert snap.done("E1") and not snap.done("E2")
    with pytest.raises(GarbledReply, match="done"):
        parse_reply("w1", reply(done=[1]))


@pytest.mark.parametrize("raised", [
    "retry", "error", "soft time limit", "terminate (SystemExit)", "interrupt"])
def test_only_a_body_that_returned_has_served_the_requests_it_covered(folder, raised):
    from celery import Celery
    from celery.exceptions import Retry, SoftTimeLimitExceeded

    from ccs_beat import SingletonTask

    app = Celery("memory_raise", broker="memory://", set_as_current=False)
    error = {"retry": Retry("again"), "error": ValueError("boom"),
             "soft time limit": SoftTimeLimitExceeded(), "interrupt": KeyboardInterrupt(),
             "terminate (SystemExit)": SystemExit(-15)}[raised]

    @app.task(name="t.raising", base=SingletonTask, singleton=True, shared=False)
    def raising():
        raise error

    @app.task(name="t.returning", base=SingletonTask, singleton=True, shared=False)
    def returning():
        return 1

    covering.record("A", "t.raising", ["B"])
    with pytest.raises(type(error)):
        app.tasks["t.raising"]._ccs_run("A", (), {})
    assert covering.reported([], None) == []
    covering.record("R", "t.returning", ["B"])
    assert app.tasks["t.returning"]._ccs_run("R", (), {}) == 1
    assert [r["by"] for r in covering.reported([], None)] == ["R"]
    app.close()


def test_a_covered_copy_still_deciding_wins_nothing_and_is_covered_by_the_winner():
    # B (covered by an earlier run) and C are deciding together; B ranks first
    # but will step aside for its cover: C must not step aside for B
    b = request("B", time_start=99.5, stamp={"sent_at": 1.0})
    c = request("C", time_start=99.6, stamp={"sent_at": 2.0})
    snap = snapshot(w1=reply(active=[b, c], covered=[
        {"by": "A", "name": "t.declared", "ids": ["B"], "ended": True, "age": 1.0}]))
    verdict, covered = judge_copy(snap, Copy(id="C", worker="w1", name="t.declared", key=KEY,
                                             spec=DEFAULT_KEY, stamp={"sent_at": 2.0},
                                             began=99.6), GuardTiming(), "emit")
    assert verdict.run, verdict
    assert covered == {"B"}          # seen deciding: sent before this read


@pytest.mark.parametrize("age", [None, covering.KEEP_FOR - 1.0])
def test_a_covered_copy_still_deciding_counts_if_its_cover_may_be_gone_when_it_reads(age):
    # a record its worker may drop before B reads (old, or of unknown age):
    # B may not see it and run, so C must not run beside it
    b = request("B", time_start=99.5, stamp={"sent_at": 1.0})
    c = request("C", time_start=99.6, stamp={"sent_at": 2.0})
    record = {"by": "A", "name": "t.declared", "ids": ["B"], "ended": True}
    if age is not None:
        record["age"] = age
    snap = snapshot(w1=reply(active=[b, c], covered=[record]))
    verdict, _ = judge_copy(snap, Copy(id="C", worker="w1", name="t.declared", key=KEY,
                                       spec=DEFAULT_KEY, stamp={"sent_at": 2.0}, began=99.6),
                            GuardTiming(), "emit")
    assert not verdict.run and verdict.winner.task_id == "B"


def test_a_copy_its_own_worker_does_not_list_as_running_is_noticed():
    # the pool told the worker late: peers cannot see this copy run
    listed = snapshot(w1=reply(active=[request("A", time_start=99.0)]))
    late = snapshot(w1=reply(reserved=[request("A")]))
    silent = snapshot(w2=reply())
    from ccs_beat.judging import unlisted
    assert not unlisted(listed, copy("A"))
    assert unlisted(late, copy("A"))
    assert not unlisted(silent, copy("A"))      # no reply from w1: the read is incomplete


def test_two_messages_of_one_reused_id_are_each_judged_by_their_own_send_time():
    # a run that ended a second ago covered message X sent at 1.0; the app
    # sent id X again at 1.5. C's read sees both X messages deciding: only
    # the covered one wins nothing, the other still ranks before C
    cover = {"by": "R", "name": "t.declared", "ids": ["X"], "ended": True, "age": 1.0,
             "sent": {"X": [1.0]}}
    again = request("X", time_start=99.5, stamp={"sent_at": 1.5})
    covered_one = request("X", time_start=99.4, stamp={"sent_at": 1.0})
    c = request("C", time_start=99.6, stamp={"sent_at": 2.0})
    seen_by_c = snapshot(w2=reply(active=[again]), w1=reply(active=[covered_one, c]),
                         w0=reply(covered=[cover]))
    verdict, _ = judge_copy(seen_by_c, Copy(id="C", worker="w1", name="t.declared", key=KEY,
                                            spec=DEFAULT_KEY, stamp={"sent_at": 2.0},
                                            began=99.6), GuardTiming(), "emit")
    assert not verdict.run and verdict.winner.rank[0] == 1.5


def test_a_record_is_young_the_moment_its_run_ends_whatever_a_reply_sees_meanwhile(
        folder, monkeypatch):
    # a body that ran more than the memory window: a reply built while the
    # record turns from running to ended must not take it for an old one
    covering.record("R", "t.declared", ["B"])
    began = time.time() - covering.REMEMBER_FOR - 10
    for path in folder.iterdir():
        os.utime(path, (began, began))
    real_replace = os.replace

    def replace_while_a_reply_is_built(src, dst):
        covering.reported([("R", os.getpid())], None)
        real_replace(src, dst)
        covering.reported([], None)
    monkeypatch.setattr(covering.os, "replace", replace_while_a_reply_is_built)
    covering.ended("R")
    monkeypatch.setattr(covering.os, "replace", real_replace)
    assert [r["by"] for r in covering.reported([], None)] == ["R"]
