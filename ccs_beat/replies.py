"""From worker replies to a :class:`~ccs_beat.snapshot.Snapshot`. Pure.

A reply is data from the broker: any process on it can answer. Each task in a
reply is validated on its own -- a malformed one is dropped and named, the
rest of the reply used -- and a reply that is not a reply at all makes its
worker count as unreadable (``on_unknown`` decides), never crashes a read.
The simulation feeds these functions the payloads its simulated workers
build, so they run the production input path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .guard import is_clock
from .logs import get_logger, printable
from .snapshot import STATES, Cover, DroppedTask, Membership, SeenTask, Snapshot, WorkerView

logger = get_logger("ccs_beat.cluster")

#: name of the inspect command served by workers that import ccs_beat
COMMAND = "ccs_snapshot"
#: version of the reply format
PROTOCOL = 1

# -- replies ----------------------------------------------------------------

class GarbledReply(ValueError):
    """A worker's reply does not have the shape we need."""


class _Unusable(ValueError):
    """One task in a reply cannot be used; the rest of the reply can."""

    def __init__(self, why: str, task_id: str | None = None, name: str | None = None):
        super().__init__(why)
        self.task_id, self.name = task_id, name


def _task_from(item: Any, state: str, worker: str, now: float | None) -> SeenTask:
    if state == "scheduled" and isinstance(item, Mapping) and "request" in item:
        item = item["request"]
    if not isinstance(item, Mapping):
        raise _Unusable(f"the item is a {type(item).__name__}, not a dict")
    task_id, name = item.get("id"), item.get("name")
    if not isinstance(task_id, str) or not isinstance(name, str):
        raise _Unusable(f"no string id and name: {dict(item)!r:.120}")
    time_start = item.get("time_start")
    if time_start is not None and (isinstance(time_start, bool)
                                   or not isinstance(time_start, (int, float))
                                   or not _finite(time_start)):
        raise _Unusable(f"time_start {time_start!r:.40}", task_id, name)
    args, kwargs = item.get("args"), item.get("kwargs")
    if args is not None and not isinstance(args, (list, tuple)):
        raise _Unusable(f"args {args!r:.80}, not a list", task_id, name)
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise _Unusable(f"kwargs {kwargs!r:.80}, not a dict", task_id, name)
    stamp, pid = item.get("stamp"), item.get("worker_pid")
    return SeenTask(id=task_id, name=name, args=args, kwargs=kwargs,
                    state=state, worker=worker, time_start=time_start, worker_now=now,
                    stamp=stamp if isinstance(stamp, Mapping) else None,
                    worker_pid=pid if isinstance(pid, int) and not isinstance(pid, bool)
                    else None)


def _tasks_from(items: list[Any], state: str, worker: str, now: float | None,
                dropped: list[DroppedTask]) -> list[SeenTask]:
    """The usable tasks of one state's list; the others go to ``dropped``,
    each with one WARNING naming the worker and the task."""
    tasks = []
    for item in items:
        try:
            tasks.append(_task_from(item, state, worker, now))
        except _Unusable as exc:
            bad = DroppedTask(worker, state, exc.task_id, exc.name, str(exc))
            logger.warning("ccs_beat: %s", bad.describe())
            dropped.append(bad)
    return tasks


def parse_reply(worker: str, body: Any) -> WorkerView:
    """Parse a worker's answer to :data:`COMMAND`. Raise :class:`GarbledReply`."""
    if not isinstance(body, Mapping):
        raise GarbledReply(f"reply is a {type(body).__name__}, not a dict")
    if body.get("ccs") != PROTOCOL:
        raise GarbledReply(f"unknown reply protocol {body.get('ccs')!r} (expected {PROTOCOL})")
    now = body.get("now")
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not _finite(now):
        raise GarbledReply(f"reply has no numeric 'now' (got {now!r:.80})")
    tasks: list[SeenTask] = []
    dropped: list[DroppedTask] = []
    for state in STATES:
        items = body.get(state)
        if not isinstance(items, list):
            raise GarbledReply(f"'{state}' is {type(items).__name__}, not a list")
        tasks.extend(_tasks_from(items, state, worker, float(now), dropped))
    peers = body.get("peers")
    if peers is not None and not (isinstance(peers, list) and all(
            isinstance(p, str) and usable_hostname(p) for p in peers)):
        raise GarbledReply(f"'peers' is {peers!r:.80}, not a list of host names")
    return WorkerView(hostname=worker, tasks=tuple(tasks), now=float(now),
                      peers=None if peers is None else frozenset(peers),
                      pool=body.get("pool") if isinstance(body.get("pool"), str) else None,
                      dropped=tuple(dropped), covers=_covers_from(body, worker),
                      done=_ids(body.get("done", []), "done"))


def _ids(value: Any, what: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise GarbledReply(f"'{what}' is {value!r:.80}, not a list of task ids")
    return frozenset(value)


def _age_from(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise GarbledReply(f"a 'covered' record's 'age' is {value!r:.40}")
    return max(float(value), 0.0)


def _sent_from(value: Any) -> dict[str, frozenset[float]]:
    """``{id: [send times]}`` of a ``covered`` record."""
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, list) and all(is_clock(t) for t in v)
            for k, v in value.items()):
        raise GarbledReply(f"a 'covered' record's 'sent' is {value!r:.80}")
    return {k: frozenset(float(t) for t in v) for k, v in value.items()}


def _covers_from(body: Mapping[str, Any], worker: str) -> tuple[Cover, ...]:
    """The ``covered`` records of a reply (absent from older workers' replies)."""
    items = body.get("covered", [])
    if not isinstance(items, list):
        raise GarbledReply(f"'covered' is {items!r:.80}, not a list")
    covers = []
    for item in items:
        if not (isinstance(item, Mapping) and isinstance(item.get("by"), str)
                and isinstance(item.get("name"), str) and isinstance(item.get("ended"), bool)):
            raise GarbledReply(f"a 'covered' record is {item!r:.120}")
        covers.append(Cover(by=item["by"], worker=worker, name=item["name"],
                            ids=_ids(item.get("ids"), "covered ids"),
                            ended=item["ended"], sent=_sent_from(item.get("sent", {})),
                            age=_age_from(item.get("age"))))
    return tuple(covers)


def _finite(value: float) -> bool:
    """A number a float can hold, and not NaN or infinite."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def usable_hostname(host: str) -> bool:
    """True for a worker name a real worker could have. Anything on the broker
    can reply under any name; one with control characters would reach log
    lines, stored decisions and the ledger (PostgreSQL refuses NUL)."""
    return 0 < len(host) <= 255 and host.isprintable()


def is_unknown_command_error(body: Any) -> bool:
    """True for the error a worker without ccs_beat sends back for our command."""
    return (isinstance(body, Mapping) and set(body) == {"error"}
            and COMMAND in str(body["error"]))


def parse_legacy(worker: str, replies: Mapping[str, Any]) -> WorkerView:
    """Build a view from the three stock inspect replies of one worker."""
    tasks: list[SeenTask] = []
    dropped: list[DroppedTask] = []
    for state in STATES:
        items = replies.get(state)
        if not isinstance(items, list):
            raise GarbledReply(f"stock '{state}' reply is {items!r:.80}, not a list")
        tasks.extend(_tasks_from(items, state, worker, None, dropped))
    return WorkerView(hostname=worker, tasks=tuple(tasks), now=None, peers=None, legacy=True,
                      dropped=tuple(dropped))


# -- from collected replies to a snapshot -------------------------------------

#: reads workers without ccs_beat with the stock commands: ``(hosts, views,
#: garbled)`` -> broadcasts made; fills ``views`` and ``garbled``
LegacyReader = Callable[[list[str], dict[str, WorkerView], dict[str, str]], int]


def parse_bodies(bodies: Mapping[str, Any], undecodable: Iterable[str] = (),
                 ) -> tuple[dict[str, WorkerView], dict[str, str], list[str]]:
    """Parse the collected reply bodies: ``(views, garbled, legacy)``, where
    ``legacy`` are the workers that answered "unknown command" (no ccs_beat).
    Pure, so the simulation turns its simulated replies into the very views a
    real read makes."""
    undecodable = list(undecodable)
    views: dict[str, WorkerView] = {}
    garbled: dict[str, str] = {}
    if undecodable:   # whose it was cannot be told: the read is not complete
        garbled["(undecodable reply)"] = (f"{len(undecodable)} reply(ies) could not be "
                                          f"decoded: {undecodable[0]}")
    legacy = []
    for host, body in bodies.items():
        if not usable_hostname(host):
            garbled[printable(host)[:200]] = "the worker name holds control characters"
            continue
        if is_unknown_command_error(body):
            legacy.append(host)
            continue
        try:
            views[host] = parse_reply(host, body)
        except GarbledReply as exc:
            garbled[host] = str(exc)
            logger.warning("ccs_beat: unusable reply from worker %s: %s", host, exc)
    return views, garbled, legacy


def snapshot_from_replies(bodies: Mapping[str, Any], membership: Membership, *,
                          clock: Callable[[], float], taken_at: float, started: float,
                          timeout: float,
                          undecodable: Iterable[str] = (),
                          read_legacy: LegacyReader | None = None,
                          broadcasts: int = 1) -> Snapshot:
    """The snapshot one read's collected reply ``bodies`` make: parsed views,
    garbled replies, and the expected workers that stayed silent (recorded in
    ``membership``, which is what a read learns for the next one).

    ``clock`` is the reader's monotonic clock, read once the replies are
    parsed (and the legacy workers read): the read's end; ``started`` is that
    clock at its start, ``taken_at`` the wall clock at its start. Without
    ``read_legacy`` (the worker guard's reads), workers without ccs_beat count
    as unreadable. No broker here: :class:`ClusterReader` and the simulation
    (:mod:`ccs_beat.simulation`) both build their snapshots with it.
    """
    views, garbled, legacy = parse_bodies(bodies, undecodable)
    if legacy and read_legacy is not None:
        broadcasts += read_legacy(legacy, views, garbled)
    else:
        for host in legacy:
            garbled[host] = f"does not serve {COMMAND} (ccs_beat not imported there)"
    now = clock()
    silent = set(membership.expected()) - bodies.keys()
    missing, gone = membership.observe(
        now, answered=bodies.keys(),
        peer_lists=[v.peers for v in views.values() if not v.legacy],
        silent=silent)
    for host in sorted(gone):
        logger.info("ccs_beat: worker %s no longer answers and Celery no longer sees it "
                    "alive; presumed gone", host)
    return Snapshot(taken_at=taken_at, elapsed=now - started, workers=views,
                    missing=missing, garbled=garbled, broadcasts=broadcasts,
                    timeout=timeout)


