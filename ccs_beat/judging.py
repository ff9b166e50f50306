"""The guard's whole decision from one cluster read. Pure.

:class:`ccs_beat.SingletonTask` reads the cluster and hands the snapshot to
:func:`judge_copy` with what it knows of itself (a :class:`Copy`): which of
the active tasks is itself, which are its identical peers and their ranks,
whether a run has covered it, and -- through :func:`ccs_beat.guard.decide_run`
-- whether its body runs. The simulation calls the very same function with
the snapshots its simulated workers' replies make.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UnkeyableError
from .events import DecisionEvent, Reason
from .guard import GuardTiming, GuardVerdict, Peer, Rank, decide_run, rank_of, sent_at
from .identity import KeySpec, task_key
from .policy import Policy
from .snapshot import Cover, SeenTask, Snapshot

#: how long a worker reports a run that covered waiting requests after it
#: ended (:mod:`ccs_beat.covering` keeps its records so long)
REMEMBER_FOR = 3600.0
#: no covering record younger than this is ever dropped, however many there
#: are: a peer deciding when a record was read must find it still there
KEEP_FOR = 60.0


@dataclass(frozen=True)
class Copy:
    """The guarded request that decides, as its own pool process knows it:
    ``began`` is its own clock when its guard began."""

    id: str
    worker: str
    name: str
    key: str
    spec: KeySpec
    stamp: Mapping[str, Any] | None
    began: float


def guard_event(verdict: GuardVerdict, copy: Copy, policy: Policy | None, took: float,
                read_at: float) -> DecisionEvent:
    """The decision event of a guard's verdict."""
    now = time.time()
    return DecisionEvent(
        source="guard", action=verdict.action, reason=verdict.reason, detail=verdict.detail,
        at=now, task=copy.name, task_id=copy.id, key=copy.key,
        overlap=policy.overlap if policy is not None else None,
        on_unknown=policy.on_unknown if policy is not None else None,
        blocker=verdict.blocker("cover" if verdict.reason is Reason.COVERED else "cluster"),
        unknown=verdict.unknown, read_age=max(0.0, now - read_at), worker=copy.worker,
        took=took)


def judge_copy(snapshot: Snapshot, copy: Copy, timing: GuardTiming,
               on_unknown: str) -> tuple[GuardVerdict, frozenset[str]]:
    """The guard's whole decision from one read: run or step aside, and, for
    a run, the identical requests it covers (seen waiting: sent before this
    read, served by a body that starts after it). Pure; the simulation calls
    it with the snapshots its simulated workers' replies make."""
    me, peers = _peers(snapshot, copy)
    cover = snapshot.cover_of(copy.id, sent_at(copy.stamp))
    covered_by = None if cover is None else Peer(
        task_id=cover.by, worker=cover.worker, age=None,
        rank=rank_of(cover.by, cover.worker, None, None))
    # a deciding peer that a run has covered steps aside: it wins nothing --
    # if the record is sure to be there still when that peer reads
    # each peer's own message: two requests can share an id (an app's own ids)
    covered_ranks = {rank_of(seen.id, seen.worker, seen.stamp, seen.time_start)
                     for seen in snapshot.tasks if seen.state == "active"
                     and _lasting(snapshot.cover_of(seen.id, sent_at(seen.stamp)), timing)}
    contenders = [p for p in peers if not (_deciding(p, timing) and p.rank in covered_ranks)]
    verdict = decide_run(me, contenders, timing, incomplete=snapshot.incomplete_reason(copy.name),
                     on_unknown=on_unknown, covered_by=covered_by)
    if not verdict.run:
        return verdict, frozenset()
    # every identical request this read saw, waiting or still deciding, was
    # sent before it; the body starts after it
    waiting = {seen.id for seen in snapshot.tasks if seen.state == "reserved"
               and _key_of(seen, copy.name, copy.spec) == copy.key}
    return verdict, frozenset(waiting | {p.task_id for p in peers if _deciding(p, timing)})


def unlisted(snapshot: Snapshot, copy: Copy) -> bool:
    """True when this copy's own worker answered but did not list it as
    active: peers reading now cannot see it run (a registration lag beyond
    the margin, outside the bounds the rule is proven in)."""
    return snapshot.answered(copy.worker) and not any(
        seen.state == "active" and seen.id == copy.id and seen.worker == copy.worker
        for seen in snapshot.tasks)


def sent_times(snapshot: Snapshot, ids: frozenset[str]) -> dict[str, list[float]]:
    """The stamped send times of the covered requests ``ids``, as the read saw
    them (every message of an id: an app can send one id twice): a cover
    then holds for those very messages, not for a later request that reuses
    an id."""
    found: dict[str, list[float]] = {}
    for seen in snapshot.tasks:
        when = sent_at(seen.stamp)
        if seen.id in ids and when is not None and when not in found.get(seen.id, ()):
            found.setdefault(seen.id, []).append(when)
    return found


def _lasting(cover: Cover | None, timing: GuardTiming) -> bool:
    """True for a cover record its worker will still report when a peer
    deciding now reads (within ``D + T + margin``): its run is still going,
    or it ended well inside the span in which a worker never drops one."""
    if cover is None:
        return False
    return not cover.ended or (cover.age is not None
                               and cover.age + 2 * timing.committed_after < KEEP_FOR)


def _deciding(peer: Peer, timing: GuardTiming) -> bool:
    return peer.guarded and peer.age is not None and peer.age <= timing.committed_after


def _peers(snapshot: Snapshot, copy: Copy) -> tuple[Rank, list[Peer]]:
    """This task's rank and the other identical tasks active in ``snapshot``.

    A request of this very message seen beside this one on this worker (a
    broker's redelivery of an unacknowledged message) is another body, not
    this one. When this worker's reply is missing, this task ranks itself by
    ``began`` (its own clock when the guard began, a moment after the
    ``time_start`` its worker reports to everyone else): never by the time it
    decides, which every other observer would see as a different rank."""
    mine = [seen for seen in snapshot.tasks if seen.state == "active"
            and seen.id == copy.id and seen.worker == copy.worker]
    me_seen = _which_is_me(mine, copy.began)
    peers = []
    for seen in snapshot.tasks:
        if seen.state != "active" or seen is me_seen:
            continue
        if seen.id != copy.id and _key_of(seen, copy.name, copy.spec) != copy.key:
            continue
        view = snapshot.workers.get(seen.worker)
        peers.append(Peer(task_id=seen.id, worker=seen.worker,
                          rank=rank_of(seen.id, seen.worker, seen.stamp, seen.time_start),
                          age=seen.age, guarded=not (view is not None and view.legacy)))
    my_start = me_seen.time_start if me_seen is not None else None
    me = rank_of(copy.id, copy.worker, copy.stamp,
                 my_start if my_start is not None else copy.began)
    return me, peers


def _which_is_me(mine: list[SeenTask], began: float) -> SeenTask | None:
    """Which of the active requests with this task's id on this worker is this
    one: the one in this pool process, else the one whose ``time_start`` is
    nearest to when this guard began (a redelivered copy arrives seconds,
    usually minutes, after its original)."""
    if not mine:
        return None
    own = [seen for seen in mine if seen.worker_pid == os.getpid()] or mine
    return min(own, key=lambda seen: abs((seen.time_start or math.inf) - began))


def _key_of(seen: Any, name: str, spec: KeySpec) -> str | None:
    if seen.stamp and isinstance(seen.stamp.get("key"), str):
        return seen.stamp["key"]
    if seen.name != name:
        return None
    try:
        return task_key(seen.name, seen.args, seen.kwargs, spec)
    except UnkeyableError:
        return None
