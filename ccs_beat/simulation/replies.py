"""A simulated worker's answer to ``ccs_snapshot``: the reply payload.

Why a payload and not ready-made peers: the guard's decision must go through
the production input path (``ccs_beat.replies.parse_reply`` and the rest of
``ccs_beat.replies.snapshot_from_replies``, then ``judging.judge_copy``). So this module
mirrors :func:`ccs_beat.control.snapshot_reply` step by step -- the skipping
marks, "reserved" being Celery's reserved requests minus the active and
scheduled ids, the ``covered`` records of :mod:`ccs_beat.covering` -- and each
task item is shaped like ``control._describe``.
"""

from __future__ import annotations

from typing import Any

from ..covering import REMEMBER_FOR
from ..replies import PROTOCOL
from .model import GOSSIP_EXPIRY, GOSSIP_LAG, TASK_ARGS, TASK_KWARGS, TASK_NAME
from .state import Request, Worker

POOL = "celery.concurrency.prefork.TaskPool"


def describe(request: Request) -> dict[str, Any]:
    """``control._describe``: ``time_start`` and ``worker_pid`` are set once the
    pool accepted the request (it is on the active list)."""
    return {"id": request.task_id, "name": TASK_NAME, "args": list(TASK_ARGS),
            "kwargs": dict(TASK_KWARGS),
            "time_start": request.time_start if request.registered else None,
            "worker_pid": request.pid if request.registered else None,
            "stamp": dict(request.stamp) if request.stamp is not None else None}


def gossip(workers: list[Worker], t: float) -> list[str]:
    """The workers Celery's heartbeats show alive at ``t``."""
    return sorted(w.name for w in workers
                  if w.joined + GOSSIP_LAG <= t < w.crashed + GOSSIP_EXPIRY)


def covered(worker: Worker, running: set[tuple[str, int | None]], t: float,
            ) -> list[dict[str, Any]]:
    """``covering.reported``: records of runs still active, and of runs that
    ended within an hour (with their age); a record whose request vanished
    without ending is gone. (Its cap of 1,000 records never binds here.)"""
    out = []
    for record in worker.covers:
        mine = (record.request.task_id, record.request.pid)
        if record.ended_at is None and mine not in running:
            continue
        if record.ended_at is not None and t - record.ended_at > REMEMBER_FOR:
            continue
        item: dict[str, Any] = {"by": record.request.task_id, "name": TASK_NAME,
                                "ids": list(record.ids), "sent": dict(record.sent),
                                "ended": record.ended_at is not None}
        if record.ended_at is not None:
            item["age"] = t - record.ended_at
        out.append(item)
    return out


def reply(worker: Worker, workers: list[Worker], t: float, guarded: bool) -> dict[str, Any]:
    """What ``snapshot_reply`` returns on ``worker`` at true time ``t``.

    ``guarded`` False: a worker of the talk's setup, without ccs_beat's
    skipping marks and covering records.
    """
    active = [r for r in worker.held if r.registered]
    running = {(r.task_id, r.pid) for r in active}
    if guarded:
        active = [r for r in active if not r.marked]
    scheduled = list(worker.scheduled)
    taken = {r.task_id for r in active} | {r.task_id for r in scheduled}
    reserved = [r for r in worker.held if r.task_id not in taken]
    return {
        "ccs": PROTOCOL,
        "now": worker.clock(t),
        "pool": POOL,
        "active": [describe(r) for r in active],
        "reserved": [describe(r) for r in reserved],
        "scheduled": [describe(r) for r in scheduled],
        "peers": gossip(workers, t),
        "covered": covered(worker, running, t) if guarded else [],
        "done": [],
    }
