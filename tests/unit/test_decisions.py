"""The beat decision, rule by rule."""

from __future__ import annotations

import pytest

from ccs_beat import Policy
from ccs_beat.decide import decide_entry
from ccs_beat.events import Reason
from ccs_beat.ledger import Emission, Status
from ccs_beat.snapshot import SeenTask

NOW = 2_000_000.0
SKIP = Policy()
BUFFER = Policy(overlap="buffer_one")
FAIL_CLOSED = Policy(on_unknown="skip")


def task(state: str = "active", task_id: str = "t1", worker: str = "w1", age: float = 5.0,
         ) -> SeenTask:
    return SeenTask(id=task_id, name="gc", args=[], kwargs={}, state=state, worker=worker,
                    time_start=NOW - age if state == "active" else None, worker_now=NOW)


def queued(task_id: str = "e1", sent_ago: float = 3.0) -> tuple:
    e = Emission(task_id=task_id, key="k", sent_at=NOW - sent_ago, expires_at=NOW + 10)
    return (e, Status.QUEUED, None)


def run(policy=SKIP, matches=(), outstanding=(), incomplete=None):
    return decide_entry(policy, matches=list(matches), outstanding=list(outstanding),
                        incomplete=incomplete, now=NOW)


def test_emits_when_nothing_blocks():
    decision = run()
    assert decision.emit and not decision.unknown
    assert decision.reason is Reason.NOTHING_IDENTICAL
    assert decision.detail == "no identical task queued or running"


def test_allow_emits_even_with_an_identical_task_running():
    assert run(Policy(overlap="allow"), matches=[task()]).emit


@pytest.mark.parametrize("state", ["active", "reserved", "scheduled"])
def test_skips_when_identical_task_is_active_reserved_or_scheduled(state):
    decision = run(matches=[task(state)])
    assert not decision.emit
    assert decision.blocker.task_id == "t1" and decision.blocker.state == state
    assert decision.blocker.worker == "w1"
    assert f"{state} on w1" in decision.describe()


def test_names_the_running_blocker_and_its_age_rather_than_a_waiting_one():
    decision = run(matches=[task("reserved", "waiting", "w2"), task("active", "running", age=7)])
    assert decision.blocker.task_id == "running"
    assert decision.blocker.age == pytest.approx(7.0)
    assert "age 7.0s" in decision.describe()


def test_skips_while_its_previous_emission_waits_in_the_broker_queue():
    decision = run(outstanding=[queued()])
    assert not decision.emit
    assert decision.blocker.state == "queued" and decision.blocker.worker is None
    assert decision.blocker.age == pytest.approx(3.0)
    assert "not picked up by any worker yet" in decision.detail


def test_skips_while_its_previous_emission_is_seen_even_under_another_key():
    e = Emission(task_id="e1", key="old-key", sent_at=NOW - 1)
    decision = run(outstanding=[(e, Status.SEEN, task(task_id="e1"))])
    assert not decision.emit and decision.blocker.task_id == "e1"


def test_incomplete_read_emits_under_on_unknown_emit_and_says_why():
    decision = run(incomplete="no reply from w2")
    assert decision.emit and decision.unknown
    assert "no reply from w2" in decision.detail and "on_unknown=emit" in decision.detail


def test_incomplete_read_skips_under_on_unknown_skip():
    decision = run(FAIL_CLOSED, incomplete="no worker answered within 1s")
    assert not decision.emit and decision.unknown
    assert "on_unknown=skip" in decision.detail


def test_emission_last_seen_on_a_silent_worker_counts_as_unknown():
    e = Emission(task_id="e1", key="k", sent_at=NOW - 1, seen_on="w2")
    decision = run(FAIL_CLOSED, outstanding=[(e, Status.UNKNOWN, None)])
    assert not decision.emit and decision.unknown
    assert "e1 was last seen on w2" in decision.detail


def test_a_seen_blocker_wins_over_an_unreadable_cluster():
    decision = run(Policy(on_unknown="emit"), matches=[task()], incomplete="no reply from w2")
    assert not decision.emit and not decision.unknown


def test_buffer_one_remembers_the_skipped_run_and_skip_does_not():
    assert run(BUFFER, matches=[task()]).buffer
    assert run(Policy(overlap="buffer_one", on_unknown="skip"), incomplete="x").buffer
    assert not run(SKIP, matches=[task()]).buffer
    assert not run(BUFFER).buffer            # emitted: nothing to remember
