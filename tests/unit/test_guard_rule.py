"""The worker guard's rule, case by case (the simulation checks it at scale)."""

from __future__ import annotations

import pytest

from ccs_beat import ConfigurationError
from ccs_beat.events import Reason
from ccs_beat.guard import GuardTiming, Peer, decide_run, rank_of
from ccs_beat.policy import load_settings

TIMING = GuardTiming(delay=1.5, timeout=1.0, margin=0.25)   # committed after 2.75 s
ME = (100.0, "me", "w1")


def peer(task_id: str = "p", age: float | None = 0.5, sent_at: float = 200.0,
         worker: str = "w2", guarded: bool = True) -> Peer:
    return Peer(task_id=task_id, worker=worker, rank=(sent_at, task_id, worker), age=age,
                guarded=guarded)


def test_runs_when_no_identical_task_is_active():
    verdict = decide_run(ME, [], TIMING)
    assert verdict.run and verdict.reason is Reason.NO_PEER
    assert verdict.detail == "no identical task running"


def test_skips_when_an_identical_task_is_committed_even_if_it_ranks_after_me():
    old = peer("old", age=2.8, sent_at=500.0)
    verdict = decide_run(ME, [old], TIMING)
    assert not verdict.run
    assert verdict.winner == old and verdict.reason is Reason.PEER_RUNNING
    assert "already running" in verdict.detail


def test_a_peer_exactly_at_the_threshold_is_still_deciding():
    verdict = decide_run(ME, [peer(age=TIMING.committed_after, sent_at=500.0)], TIMING)
    assert verdict.run


def test_skips_for_a_deciding_peer_of_lower_rank():
    first = peer("first", age=0.4, sent_at=50.0)
    verdict = decide_run(ME, [first], TIMING)
    assert not verdict.run and verdict.winner == first
    assert verdict.reason is Reason.PEER_RANKS_FIRST and "ranks first" in verdict.detail


def test_runs_when_every_deciding_peer_ranks_after_me():
    verdict = decide_run(ME, [peer("a", sent_at=101.0), peer("b", sent_at=300.0)], TIMING)
    assert verdict.run and verdict.detail == "ranks first among 3 identical tasks"


def test_equal_sent_at_is_broken_by_task_id_then_worker():
    assert rank_of("a", "w2", {"sent_at": 5.0}, None) < rank_of("b", "w1", {"sent_at": 5.0}, None)
    # the same id twice (a redelivery while the original still runs): the worker decides
    assert rank_of("x", "w1", {"sent_at": 5.0}, 1.0) < rank_of("x", "w2", {"sent_at": 5.0}, 0.0)


def test_two_requests_of_one_message_on_one_worker_rank_the_older_first():
    # a redelivery beside the original on the same worker: one stamp, one id
    original = rank_of("x", "w1", {"sent_at": 5.0}, 10.0)
    copy = rank_of("x", "w1", {"sent_at": 5.0}, 70.0)
    assert original < copy


def test_rank_falls_back_to_the_reported_time_start_without_a_stamp():
    assert rank_of("a", "w1", None, 42.0) == (42.0, "a", "w1", 42.0)
    assert rank_of("a", "w1", {"sent_at": "soon"}, 42.0) == (42.0, "a", "w1", 42.0)
    assert rank_of("a", "w1", {"sent_at": True}, None)[0] == float("inf")


def test_an_identical_task_on_a_worker_without_ccs_beat_counts_as_running():
    unguarded = peer("legacy", age=None, sent_at=1.0, guarded=False)
    verdict = decide_run(ME, [unguarded], TIMING)
    assert not verdict.run and "running unguarded" in verdict.detail


def test_the_oldest_committed_peer_is_named_the_winner():
    verdict = decide_run(ME, [peer("young", age=3.0), peer("oldest", age=9.0)], TIMING)
    assert verdict.winner.task_id == "oldest"


def test_incomplete_read_runs_with_a_warning_under_on_unknown_emit():
    verdict = decide_run(ME, [], TIMING, incomplete="no reply from w3")
    assert verdict.run and verdict.unknown
    assert "no reply from w3" in verdict.detail and "on_unknown=emit" in verdict.detail


def test_incomplete_read_skips_under_on_unknown_skip():
    verdict = decide_run(ME, [], TIMING, incomplete="no reply from w3", on_unknown="skip")
    assert not verdict.run and verdict.unknown and verdict.winner is None


def test_a_seen_blocker_wins_over_on_unknown():
    verdict = decide_run(ME, [peer(age=5.0)], TIMING, incomplete="no reply from w3")
    assert not verdict.run and not verdict.unknown


@pytest.mark.parametrize(("delay", "timeout", "margin", "ok"), [
    (1.5, 1.0, 0.25, True),
    (1.0, 1.0, 0.0, True),
    (1.2, 1.0, 0.25, False),
    (0.2, 1.0, 0.25, False),
])
def test_timing_requires_delay_of_at_least_timeout_plus_twice_the_margin(delay, timeout,
                                                                         margin, ok):
    problem = GuardTiming(delay, timeout, margin).problem()
    assert (problem is None) is ok
    if not ok:
        assert f"{delay:g}s" in problem and f"{timeout:g}s" in problem


def test_unsafe_guard_settings_are_a_configuration_error_naming_them():
    with pytest.raises(ConfigurationError, match="ccs_beat_guard_delay") as info:
        load_settings({"ccs_beat_guard_delay": 0.5, "ccs_beat_guard_timeout": 1.0})
    assert "0.5s" in str(info.value)


def test_guard_settings_default_to_a_safe_timing():
    settings = load_settings({})
    assert settings.guard_timing == TIMING and TIMING.problem() is None


@pytest.mark.parametrize("name", ["ccs_beat_guard_delay", "ccs_beat_guard_timeout",
                                  "ccs_beat_guard_margin"])
def test_guard_settings_reject_non_numbers(name):
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: "fast"})


@pytest.mark.parametrize("forged", [float("nan"), float("inf"), float("-inf"), 10**400, True])
def test_a_forged_stamp_clock_falls_back_to_the_reported_time_start(forged):
    # whoever publishes to the broker writes the stamp: NaN would make every
    # rank comparison false (both copies run), 10**400 would crash the guard
    assert rank_of("t-1", "w1", {"sent_at": forged}, 5.0) == (5.0, "t-1", "w1", 5.0)
    honest = rank_of("t-2", "w2", {"sent_at": 7.0}, 9.0)
    assert (rank_of("t-1", "w1", {"sent_at": forged}, 5.0) < honest) != \
        (honest < rank_of("t-1", "w1", {"sent_at": forged}, 5.0))
