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
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from celery import signals, states
from celery.worker import state as worker_state
from celery.worker.control import inspect_command
from celery.worker.request import Request

from . import covering
from . import skipping as skipping_marks
from .replies import COMMAND, PROTOCOL

#: message header that carries the sender's stamp
STAMP_HEADER = "ccs_beat"

#: how long, and how many, beat emissions a worker remembers having received
RECEIVED_FOR = 24 * 3600.0
MAX_RECEIVED = 10_000

#: beat emissions this worker received: task id -> wall clock of receipt
_received: OrderedDict[str, float] = OrderedDict()


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


def stamp_of(request: Any) -> Mapping[str, Any] | None:
    """The stamp in a task's request context: a top-level message header,
    which Celery puts on the context (or, in some versions, under
    ``headers``)."""
    found = vars(request) if hasattr(request, "__dict__") else {}
    stamp = found.get(STAMP_HEADER)
    if stamp is None:
        headers = found.get("headers")
        stamp = headers.get(STAMP_HEADER) if isinstance(headers, Mapping) else None
    return stamp if isinstance(stamp, Mapping) else None


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


@signals.task_received.connect(weak=False)
def _note_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Remember the beat emissions this worker received (in the consumer
    thread, like the replies), so that beat can tell an emission that ran
    between two of its reads from one still waiting in the broker."""
    headers = getattr(request, "request_dict", None) or {}
    stamp = headers.get(STAMP_HEADER) if isinstance(headers, Mapping) else None
    if not isinstance(stamp, Mapping) or "entry" not in stamp or not isinstance(
            getattr(request, "id", None), str):
        return
    now = time.time()
    _received[request.id] = now
    _received.move_to_end(request.id)
    while _received and (len(_received) > MAX_RECEIVED
                         or now - next(iter(_received.values())) > RECEIVED_FOR):
        skipping_marks.forget_finished(_received.popitem(last=False)[0])


@signals.task_postrun.connect(weak=False)
def _note_finished(task_id: Any = None, task: Any = None, state: Any = None,
                   retval: Any = None, **_: Any) -> None:
    """In the pool process, when a beat emission's body has returned or
    raised: mark it finished. Not for a retry or a reject that requeues (the
    message, or its next attempt, is back in the queue). A body whose process
    was killed or terminated sends no signal: no mark, and the emission
    counts as queued until it expires."""
    if state == states.RETRY or (state == states.REJECTED
                                 and getattr(retval, "requeue", True)):
        return
    stamp = stamp_of(getattr(task, "request", None))
    if isinstance(task_id, str) and stamp is not None and "entry" in stamp:
        skipping_marks.mark_finished(task_id)


def _done(asked: Iterable[str] | None, held: set[str]) -> list[str]:
    """Of the emission ids beat ``asked`` about, those this worker received,
    ran to the end (returned or raised) and no longer holds."""
    if not asked:
        return []
    return sorted(i for i in set(asked) if isinstance(i, str) and i in _received
                  and i not in held and skipping_marks.finished(i))


def snapshot_reply(consumer: Any, names: Iterable[str] | None = None,
                   ids: Iterable[str] | None = None) -> dict[str, Any]:
    """Build the reply: every request this worker holds, in one pass, the
    runs that covered waiting requests (:mod:`ccs_beat.covering`), and which
    of the emissions ``ids`` it received and no longer holds."""
    wanted = None if names is None else set(names)
    active = list(worker_state.active_requests)
    running = [(r.id, r.worker_pid) for r in active]
    # a copy that decided to step aside is no peer, however long it lingers
    skipping = skipping_marks.marked([(r.id, r.worker_pid) for r in active])
    if skipping:
        active = [r for r in active if (r.id, r.worker_pid) not in skipping]
    scheduled = list(_scheduled(consumer))
    taken = {r.id for r in active} | {r.id for r in scheduled}
    held = list(worker_state.reserved_requests)
    reserved = [r for r in held if r.id not in taken]

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
        "covered": covering.reported(running, wanted),
        "done": _done(ids, taken | {r.id for r in held} | {i for i, _ in running}),
    }


@inspect_command(name=COMMAND, signature="[names] [ids]")
def ccs_snapshot(state: Any, names: Iterable[str] | None = None,
                 ids: Iterable[str] | None = None, **kwargs: Any) -> dict:
    """ccs_beat: active, reserved and scheduled requests, read at once."""
    return snapshot_reply(state.consumer, names, ids if isinstance(ids, list) else None)
