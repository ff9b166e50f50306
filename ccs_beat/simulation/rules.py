"""The two rules a simulated guard can follow, from the replies it collected.

Why both go through ``replies.snapshot_from_replies``: the talk's rule reads
the same payloads (its workers simply have no skipping marks and no covering
records), so the two rules differ only in what they decide, never in how the
replies are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import judging
from .. import replies as reply_parsing
from ..identity import DEFAULT_KEY
from ..snapshot import Membership, Snapshot
from .model import TASK_ARGS, TASK_KWARGS, TASK_NAME, WORKER_EXPIRY

if TYPE_CHECKING:
    from .state import Request, Worker
    from .world import World


def _snapshot(world: World, request: Request, membership: Membership,
              ) -> Snapshot:
    reader = request.reader
    assert reader is not None
    now = world.now
    return reply_parsing.snapshot_from_replies(
        reader.bodies, membership, clock=lambda: now, taken_at=reader.query,
        started=reader.query, timeout=world.timing.timeout)


def ccs_decides(world: World, request: Request, worker: Worker,
                ) -> tuple[bool, dict[str, list[float]], str]:
    """ccs_beat's guard: the production ``judging.judge_copy`` on the snapshot
    its pool process's reader makes of the replies (its membership included).
    A run's covered requests come back with their stamped send times, as
    ``task.sent_times`` records them (None: unstamped)."""
    from .world import KEY

    assert request.pid is not None and request.time_start is not None
    snapshot = _snapshot(world, request, world.membership(worker, request.pid))
    copy = judging.Copy(id=request.task_id, worker=worker.name, name=TASK_NAME, key=KEY,
                            spec=DEFAULT_KEY, stamp=request.stamp,
                            began=request.time_start + 0.0005)
    verdict, covered = judging.judge_copy(snapshot, copy, world.timing,
                                              world.cond.on_unknown)
    sent = judging.sent_times(snapshot, covered)
    return verdict.run, {i: sent.get(i, []) for i in covered}, verdict.detail


def talk_decides(world: World, request: Request, worker: Worker,
                 ) -> tuple[bool, dict[str, list[float]], str]:
    """The talk's rule: run unless an identical active task shows an earlier
    ``time_start`` -- the peer's clock compared with this worker's own."""
    snapshot = _snapshot(world, request, Membership(WORKER_EXPIRY))
    own = request.time_start
    assert own is not None
    earlier = [seen for seen in snapshot.tasks
               if seen.state == "active" and seen.name == TASK_NAME
               and list(seen.args or ()) == list(TASK_ARGS)
               and dict(seen.kwargs or {}) == TASK_KWARGS
               and not (seen.id == request.task_id and seen.worker == worker.name
                        and seen.worker_pid == request.pid)
               and seen.time_start is not None and seen.time_start < own]
    if earlier:
        return False, {}, f"{len(earlier)} identical task(s) started earlier"
    return True, {}, "no identical task started earlier"
