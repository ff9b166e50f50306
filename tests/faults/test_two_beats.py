"""Faults: two beats by mistake (two SingletonSchedulers, each with its own
schedule file, on the same schedule), and the worker guard between them.

Each beat reads the cluster, so it skips while the other beat's task is on a
worker. What neither can see is the other's message while it waits in the
broker queue: that is when both emit. Left to themselves the two beats hit that
window only by chance (it lasts milliseconds on loopback), so this test makes
it happen in every round: the workers stop consuming the queue (Celery's
``cancel_consumer`` remote control), both beats emit -- each one's decisions show one
emission and then a skip of its own queued message -- and the workers consume
again (``add_consumer``). Two identical guarded messages then start together,
and the guard must let exactly one body run and turn the other away.
"""

from __future__ import annotations

import pytest
from celery.result import AsyncResult

from ccs_beat.events import DecisionEvent
from tests.conftest import require_broker
from tests.integration.harness import Cluster, Proc, assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(240)

GUARD = {"ccs_beat_guard_delay": 0.6, "ccs_beat_guard_timeout": 0.3,
         "ccs_beat_guard_margin": 0.15}
BODY = 3.0          # seconds: the winner still runs when the next round is prepared
ROUNDS = 3


def consuming(cluster: Cluster, hosts: list[str]) -> set[str]:
    """The workers among ``hosts`` that consume the test queue now."""
    replies = cluster.app.control.inspect(destination=hosts, timeout=2.0).active_queues() or {}
    return {host for host, queues in replies.items()
            if any(q.get("name") == cluster.queue for q in queues)}


def set_consuming(cluster: Cluster, hosts: list[str], on: bool) -> None:
    """Make every worker consume the queue, or none; return once they all do."""
    command = cluster.app.control.add_consumer if on else cluster.app.control.cancel_consumer
    replies = command(cluster.queue, destination=hosts, reply=True, timeout=5.0)
    assert {host for reply in replies for host in reply} == set(hosts), replies
    wait_until(lambda: consuming(cluster, hosts) == (set(hosts) if on else set()), 20,
               interval=0.2, what=f"workers to {'consume' if on else 'stop consuming'}")


def guard_skips(workers) -> dict[str, DecisionEvent]:
    """Turned-away duplicates: task id -> the guard's decision (naming the winner)."""
    return {e.task_id: e for w in workers for e in w.decisions()
            if e.source == "guard" and e.action == "step_aside" and e.task == "tests.guarded"}


def round_emission(beat: Proc, known: set[str], number: int) -> str | None:
    """The one id ``beat`` emitted in this round (not in ``known``), once its
    decisions also show it skipping that id as still queued; None before that."""
    decisions = beat.decisions("guarded")
    ids = [e.task_id for e in decisions if e.action == "emit" and e.task_id not in known]
    assert len(ids) < 2, f"{beat.name} emitted twice in round {number}: {ids}"
    if not ids:
        return None
    queued = [s for s in decisions if s.action == "skip" and s.reason == "previous_queued"
              and s.blocker and s.blocker.task_id == ids[0]]
    return ids[0] if queued else None


def round_decided(cluster: Cluster, workers: list[Proc], pair: dict[str, str]) -> bool:
    """Each copy of the round either started its body or was turned away."""
    ids = set(pair.values())
    ran = {r.id for r in cluster.runs("g")} & ids
    return len(ran) + len(set(guard_skips(workers)) & ids) >= len(ids)


def test_two_beats_on_one_schedule_never_run_two_bodies_at_once(make_cluster, capsys):
    # a result backend tells each beat that its copy ended (SKIPPED or SUCCESS):
    # without one, a copy turned away between two of its reads would count as
    # queued until its expiry
    cluster = make_cluster(
        settings=GUARD, backend=require_broker("redis"),
        schedule={"guarded": {"task": "tests.guarded", "schedule": 1.0, "args": [BODY],
                              "kwargs": {"tag": "g"},
                              # a queued emission stays outstanding in its beat's ledger
                              "options": {"singleton": {"expires": 60}}}})
    hosts = [cluster.hostname(f"w{i}") for i in range(2)]
    workers = [cluster.start_worker(f"w{i}", concurrency=2, wait=False) for i in range(2)]
    cluster.wait_for_workers(hosts)
    set_consuming(cluster, hosts, on=False)
    beats = [cluster.start_beat("beat-a"), cluster.start_beat("beat-b", schedule_file="schedule-b")]

    rounds: list[dict[str, str]] = []     # per round: beat name -> the id it emitted
    for number in range(ROUNDS):
        known = {i for r in rounds for i in r.values()}
        wait_until(lambda k=known, n=number: all(round_emission(b, k, n) for b in beats), 30,
                   interval=0.2, what=f"both beats to emit in round {number}")
        pair = {b.name: round_emission(b, known, number) for b in beats}
        rounds.append(pair)

        set_consuming(cluster, hosts, on=True)      # both copies start together
        wait_until(lambda p=pair: round_decided(cluster, workers, p), 30, interval=0.1,
                   what=f"the guard to decide round {number}")
        if number < ROUNDS - 1:
            # the winner still runs; its end makes both beats emit the next round
            set_consuming(cluster, hosts, on=False)
        else:
            for beat in beats:
                assert beat.alive(), f"{beat.name} exited:\n{beat.text()[-3000:]}"
                cluster.stop(beat)
    wait_until(lambda: len(cluster.finished_runs("g")) == len(cluster.runs("g")), 30,
               what="the last body to end")

    runs = cluster.runs("g")
    skips = guard_skips(workers)
    emitted = {e.task_id for b in beats for e in b.emitted("guarded")}
    with capsys.disabled():
        print(f"\n[fault] two beats: {len(emitted)} emissions in {ROUNDS} rounds of one "
              f"per beat, {len(runs)} bodies, {len(skips)} turned away by the guard")

    # the condition: in every round each beat sent its own copy, and that is all they sent
    assert emitted == {i for pair in rounds for i in pair.values()}, (emitted, rounds)
    assert all(len(set(pair.values())) == 2 for pair in rounds), rounds
    # the guard: no two bodies overlapped, not by a millisecond (an unfinished one
    # would count as running until now; all have ended) ...
    assert_no_overlap(runs)
    # ... because of each round's two copies exactly one body ran, and the other was
    # turned away naming it (SKIPPED in the result backend, the winner SUCCESS)
    ran = {r.id for r in runs}
    for number, pair in enumerate(rounds):
        winners = ran & set(pair.values())
        assert len(winners) == 1, f"round {number}: bodies {sorted(winners)} of {pair}"
        (winner,) = winners
        (loser,) = set(pair.values()) - winners
        assert loser in skips, f"round {number}: {loser} neither ran nor was turned away"
        # both copies were deciding at once: the loser yielded to the winner's
        # rank, or -- when the winner's read saw it deciding and the winner's
        # run was already under way when the loser read -- to the cover the
        # winner recorded for it; never to a body that had been running before
        assert skips[loser].reason in ("peer_ranks_first", "covered"), (number, skips[loser])
        assert skips[loser].blocker and skips[loser].blocker.task_id == winner, (
            number, skips[loser])
        states = {i: AsyncResult(i, app=cluster.app).state for i in (winner, loser)}
        assert states == {winner: "SUCCESS", loser: "SKIPPED"}, (number, states)
    assert len(runs) == ROUNDS, runs
    assert set(skips) == {i for pair in rounds for i in pair.values()} - ran
