"""Worker side of the cluster read, and the sender's stamp.

``ccs_snapshot`` is an inspect command (registered with Celery's
``inspect_command``) that a worker answers with its active, reserved and
scheduled requests read in one go from the consumer thread -- no other
command runs between the three reads -- plus its own clock, its pool and the
peers Celery's gossip shows alive.

A worker serves it as soon as ``ccs_beat`` is imported in the worker process.
That happens by itself when the worker is started with the ``celery`` command
(ccs_beat registers a ``celery ccs`` sub-command, and Celery imports those
plugins at start-up); otherwise add ``import ccs_beat`` to your Celery app
module.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from celery.worker import state as worker_state
from celery.worker.control import inspect_command
from celery.worker.request import Request

from . import skipping as skipping_marks
from .cluster import COMMAND, PROTOCOL

#: message header that carries the sender's stamp
STAMP_HEADER = "ccs_beat"


def make_stamp(key: str, *, entry: str | None = None, sent_at: float | None = None,
               ) -> dict[str, Any]:
    """The stamp a sender writes into a singleton message's headers.

    ``sent_at`` (the sender's clock) and the task id are the rank the worker
    guard orders duplicates by; ``key`` lets any observer recognise the task's
    identity without recomputing it.
    """
    stamp: dict[str, Any] = {"v": 1, "key": key,
                             "sent_at": time.time() if sent_at is None else sent_at}
    if entry is not None:
        stamp["entry"] = entry
    return stamp


def _describe(request: Request) -> dict[str, Any]:
    headers = request.request_dict or {}
    stamp = headers.get(STAMP_HEADER)
    return {
        "id": request.id,
        "name": request.name,
        "args": request.args,
        "kwargs": request.kwargs,
        "time_start": request.time_start,
        "worker_pid": request.worker_pid,
        "stamp": stamp if isinstance(stamp, Mapping) else None,
    }


def _scheduled(consumer: Any) -> Iterable[Request]:
    timer = getattr(consumer, "timer", None)
    queue = getattr(getattr(timer, "schedule", None), "queue", None) or ()
    for waiting in list(queue):
        try:
            arg0 = waiting.entry.args[0]
        except (AttributeError, IndexError, TypeError):
            continue
        if isinstance(arg0, Request):
            yield arg0


def _peers(consumer: Any) -> list[str] | None:
    gossip = getattr(consumer, "gossip", None)
    if gossip is None or not getattr(gossip, "enabled", False):
        return None
    try:
        return sorted(w.hostname for w in gossip.state.alive_workers())
    except Exception:  # noqa: BLE001 - gossip internals differ across versions
        return None


def snapshot_reply(consumer: Any, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Build the reply: every request this worker holds, in one pass."""
    wanted = None if names is None else set(names)
    active = list(worker_state.active_requests)
    # a copy that decided to step aside is no peer, however long it lingers
    skipping = skipping_marks.marked([(r.id, r.worker_pid) for r in active])
    if skipping:
        active = [r for r in active if (r.id, r.worker_pid) not in skipping]
    scheduled = list(_scheduled(consumer))
    taken = {r.id for r in active} | {r.id for r in scheduled}
    reserved = [r for r in list(worker_state.reserved_requests) if r.id not in taken]

    def pick(requests: list[Request]) -> list[dict[str, Any]]:
        return [_describe(r) for r in requests if wanted is None or r.name in wanted]

    pool = getattr(consumer, "pool", None)
    return {
        "ccs": PROTOCOL,
        "now": time.time(),
        "pool": type(pool).__module__ + "." + type(pool).__name__ if pool else None,
        "active": pick(active),
        "reserved": pick(reserved),
        "scheduled": pick(scheduled),
        "peers": _peers(consumer),
    }


@inspect_command(name=COMMAND, signature="[names]")
def ccs_snapshot(state: Any, names: Iterable[str] | None = None, **kwargs: Any) -> dict:
    """ccs_beat: active, reserved and scheduled requests, read at once."""
    return snapshot_reply(state.consumer, names)
