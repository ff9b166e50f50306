"""What one cluster read saw: immutable values, and who is expected to answer. Pure.

A :class:`Snapshot` holds each answering worker's :class:`WorkerView` (its
active, reserved and scheduled tasks as :class:`SeenTask` values, the runs it
covered, the emissions it finished), who was silent or garbled, and why the
read may be incomplete. :class:`Membership` remembers between reads which
workers exist, so a read knows when every expected reply is in.
:mod:`ccs_beat.replies` builds snapshots from reply payloads;
:mod:`ccs_beat.cluster` collects those payloads from the broker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UnkeyableError
from .identity import KeySpec, task_key
from .logs import get_logger

logger = get_logger("ccs_beat.cluster")


#: the states a worker reports, in the order the stock inspect commands name them
STATES = ("active", "reserved", "scheduled")

@dataclass(frozen=True)
class SeenTask:
    """One task request as a worker reported it."""

    id: str
    name: str
    args: Any
    kwargs: Any
    state: str
    worker: str
    time_start: float | None = None
    worker_now: float | None = None
    stamp: Mapping[str, Any] | None = None
    worker_pid: int | None = None      # the pool process running it (active tasks)

    @property
    def age(self) -> float | None:
        """Seconds since the task started, by the worker's own clock."""
        if self.time_start is None or self.worker_now is None:
            return None
        age = self.worker_now - self.time_start
        return max(0.0, age) if math.isfinite(age) else None


@dataclass(frozen=True)
class DroppedTask:
    """A task in a reply that could not be used (a non-Python producer's
    ``args=5``, a ``time_start`` that is not a clock): left out of the view,
    and the read counts as incomplete for tasks of its name."""

    worker: str
    state: str
    task_id: str | None
    name: str | None
    why: str

    def describe(self) -> str:
        what = (f"task {self.task_id} ({self.name})" if self.task_id
                else f"{self.state} item")
        return f"unusable {what} in {self.worker}'s reply: {self.why}"


@dataclass(frozen=True)
class Cover:
    """A run that covered identical requests waiting when it decided to run
    (see :mod:`ccs_beat.covering`): ``by`` on ``worker``, ``ended`` once its
    body returned."""

    by: str
    worker: str
    name: str
    ids: frozenset[str]
    ended: bool
    #: the stamped send times of covered requests that had one
    sent: Mapping[str, frozenset[float]] = field(default_factory=dict)
    #: seconds since the run ended, by its worker's clock (None: running)
    age: float | None = None

    def covers(self, task_id: str, sent_at: float | None) -> bool:
        """True for request ``task_id``; a stamped one only if it is the very
        message the run saw (an id can be reused by a later request)."""
        if task_id not in self.ids:
            return False
        seen = self.sent.get(task_id)
        return seen is None or sent_at is None or sent_at in seen


@dataclass(frozen=True)
class WorkerView:
    hostname: str
    tasks: tuple[SeenTask, ...]
    now: float | None
    peers: frozenset[str] | None
    legacy: bool = False
    pool: str | None = None
    dropped: tuple[DroppedTask, ...] = ()
    covers: tuple[Cover, ...] = ()
    done: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Snapshot:
    """What the cluster looked like at ``taken_at`` (beat's wall clock).

    ``missing`` are workers we expected but that did not answer; ``garbled``
    maps workers whose reply we could not use to the reason; ``failure`` is set
    when the broker itself could not be used. A snapshot is *complete* when at
    least one worker answered and none of those three holds.
    """

    taken_at: float
    elapsed: float = 0.0
    workers: Mapping[str, WorkerView] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()
    garbled: Mapping[str, str] = field(default_factory=dict)
    failure: str | None = None
    broadcasts: int = 0
    timeout: float = 0.0
    _by_id: dict[str, SeenTask] = field(default_factory=dict, compare=False, repr=False)
    _indexes: dict[KeySpec, dict[str, list[SeenTask]]] = field(
        default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for view in self.workers.values():
            for task in view.tasks:
                self._by_id.setdefault(task.id, task)

    @property
    def tasks(self) -> Iterable[SeenTask]:
        for view in self.workers.values():
            yield from view.tasks

    def find(self, task_id: str) -> SeenTask | None:
        return self._by_id.get(task_id)

    def cover_of(self, task_id: str, sent_at: float | None = None) -> Cover | None:
        """A run that covered request ``task_id`` sent at ``sent_at`` (a
        redelivery of the very message that ran, too: the run's read saw it
        waiting)."""
        for view in self.workers.values():
            for cover in view.covers:
                if cover.covers(task_id, sent_at):
                    return cover
        return None

    def done(self, task_id: str) -> bool:
        """True if a worker reports it received ``task_id`` and no longer holds it."""
        return any(task_id in view.done for view in self.workers.values())

    def answered(self, worker: str) -> bool:
        return worker in self.workers

    def unreadable(self, worker: str) -> bool:
        """True if ``worker`` is expected but we could not read it this time."""
        return (self.failure is not None or worker in self.missing
                or worker in self.garbled)

    def incomplete_reason(self, name: str | None = None) -> str | None:
        """Why this snapshot cannot be trusted to show every task (of task
        ``name``, when given), or None. An unusable task in a reply counts
        only for its own name (or for every name, when it gave none)."""
        if self.failure is not None:
            return f"broker error: {self.failure}"
        reasons = []
        if not self.workers and not self.garbled and not self.missing:
            return f"no worker answered within {self.timeout:g}s"
        if self.missing:
            reasons.append("no reply from " + ", ".join(sorted(self.missing)))
        for worker, why in sorted(self.garbled.items()):
            reasons.append(f"unusable reply from {worker}: {why}")
        reasons.extend(item.describe() for item in self.dropped
                       if name is None or item.name in (None, name))
        return "; ".join(reasons) or None

    @property
    def dropped(self) -> Iterable[DroppedTask]:
        for view in self.workers.values():
            yield from view.dropped

    def index(self, spec: KeySpec) -> dict[str, list[SeenTask]]:
        """Tasks grouped by their key under ``spec`` (computed once per spec)."""
        found = self._indexes.get(spec)
        if found is None:
            found = {}
            for task in self.tasks:
                try:
                    key = task_key(task.name, task.args, task.kwargs, spec)
                except UnkeyableError as exc:
                    logger.debug("ccs_beat: cannot key %s[%s] on %s: %s",
                                 task.name, task.id, task.worker, exc)
                    continue
                found.setdefault(key, []).append(task)
            self._indexes[spec] = found
        return found

    def matching(self, spec: KeySpec, key: str, name: str) -> list[SeenTask]:
        """The tasks identical to a task ``name`` of key ``key`` under ``spec``,
        by the worker guard's own rule: the same task name and arguments of
        that key, or a sender's stamp naming that key. A key function that
        ignores the task name cannot make another task's request identical in
        beat's eyes while the guard would let both run."""
        found = [t for t in self.index(spec).get(key, []) if t.name == name]
        seen = {id(t) for t in found}
        found.extend(t for t in self.tasks if id(t) not in seen and t.stamp is not None
                     and t.stamp.get("key") == key)
        return found

    def summary(self) -> str:
        text = (f"{len(self.workers)} worker(s) answered in {self.elapsed * 1000:.0f} ms, "
                f"{sum(len(v.tasks) for v in self.workers.values())} task(s) seen")
        reason = self.incomplete_reason()
        return f"{text}; incomplete: {reason}" if reason else text


# -- membership -------------------------------------------------------------

class Membership:
    """Which workers a read should wait for.

    A worker is expected once it has answered, or once a peer's reply lists it
    (Celery's gossip: heartbeats and online/offline events). It stops being
    expected when it has been silent for ``expiry`` seconds, or sooner when it
    missed two reads in a row and no answering peer's gossip shows it alive
    (Celery's own heartbeat liveness; two reads, so one slow reply or a peer
    that just started and knows nobody yet cannot make a live worker vanish).
    """

    def __init__(self, expiry: float) -> None:
        self.expiry = expiry
        self.last_seen: dict[str, float] = {}
        self.missed: dict[str, int] = {}

    def expected(self) -> frozenset[str]:
        return frozenset(self.last_seen)

    def observe(self, now: float, answered: Iterable[str],
                peer_lists: Iterable[frozenset[str] | None],
                silent: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
        """Record one read; return ``(missing, gone)``.

        ``missing`` are silent workers still expected (the read is incomplete);
        ``gone`` are silent workers now presumed dead and forgotten.
        """
        answered = set(answered)
        lists = list(peer_lists)
        for host in answered:
            self.last_seen[host] = now
            self.missed.pop(host, None)
        gossip_alive: set[str] = set()
        gossip_complete = bool(lists) and all(p is not None for p in lists)
        for peers in lists:
            if peers:
                gossip_alive |= peers
        for host in gossip_alive - answered:
            self.last_seen.setdefault(host, now)
        missing, gone = set(), set()
        for host in (set(silent) | gossip_alive) - answered:
            missed = self.missed[host] = self.missed.get(host, 0) + 1
            silent_for = now - self.last_seen.get(host, now)
            dead_by_gossip = gossip_complete and host not in gossip_alive and missed >= 2
            if dead_by_gossip or silent_for > self.expiry:
                self.last_seen.pop(host, None)
                self.missed.pop(host, None)
                gone.add(host)
            else:
                missing.add(host)
        return frozenset(missing), frozenset(gone)


