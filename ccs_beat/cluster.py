"""Reading the cluster: one broadcast -> an immutable :class:`Snapshot`.

The stock approach calls ``inspect().active()``, ``.reserved()`` and
``.scheduled()`` one after the other, and each waits its whole timeout because
it does not know how many replies to expect: about 3 s per check. Here:

* one broadcast of the ``ccs_snapshot`` command (see :mod:`ccs_beat.control`),
  which each worker answers with active + reserved + scheduled read in one go,
  plus its own clock and the peers it knows from Celery's gossip;
* the wait ends as soon as every *expected* worker has answered. Membership
  comes from previous replies and from the peers lists (which Celery builds
  from worker heartbeats and online/offline events). A reply from a worker we
  did not expect means membership is stale, so that read waits the full
  timeout; a known worker that stays silent makes the read incomplete, which
  the decision treats as "cannot tell" (``on_unknown``);
* workers without ccs_beat answer the broadcast with an error; they are then
  read with the three stock commands, addressed to them only.

The pure parts (:class:`Membership`, :func:`parse_reply`, :class:`Snapshot`) are
separate from :class:`ClusterReader`, the only piece that talks to a broker.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kombu import Consumer
from kombu.utils.uuid import uuid

from .errors import ConfigurationError, UnkeyableError
from .guard import is_clock
from .identity import KeySpec, task_key
from .logs import get_logger, printable

logger = get_logger(__name__)

#: name of the inspect command served by workers that import ccs_beat
COMMAND = "ccs_snapshot"
#: version of the reply format
PROTOCOL = 1

STATES = ("active", "reserved", "scheduled")

#: the least time left in a read's budget worth a retry, in seconds
MIN_RETRY = 0.05


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


# -- the broker side --------------------------------------------------------

def check_broadcast_support(app: Any) -> None:
    """Raise :class:`ConfigurationError` if the broker transport has no fanout."""
    conn = app.connection_for_read()
    try:
        supported = conn.supports_exchange_type("fanout")
        transport = conn.transport_cls
    finally:
        conn.release()
    if not supported:
        raise ConfigurationError(
            f"ccs_beat reads the cluster with a broadcast, but the {transport!r} broker "
            f"transport (broker_url={app.conf.broker_url!r}) has no broadcast (fanout) "
            "exchanges. Use RabbitMQ (amqp), Redis or the filesystem transport for the beat's "
            "broker, or run plain beat (no entry with a singleton policy, and "
            "ccs_beat_default_policy='allow').")


class ClusterReader:
    """Reads the cluster with one broadcast and keeps membership between reads.

    It owns one broker connection, reused across reads (a new connection costs
    more than the read itself) and dropped on any broker error.
    """

    def __init__(self, app: Any, timeout: float = 1.0, worker_expiry: float = 30.0) -> None:
        self.app = app
        self.timeout = timeout
        self.membership = Membership(worker_expiry)
        self.reads = 0
        self.broadcasts = 0
        self._conn: Any = None

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # closing a broken connection
                conn.release()

    def _connection(self, budget: float) -> Any:
        if self._conn is None:
            conn = self.app.connection_for_read()
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                                   timeout=budget)
            self._conn = conn
        return self._conn

    def read(self, names: Iterable[str] | None = None, *, legacy: bool = True,
             ids: Iterable[str] | None = None) -> Snapshot:
        """One cluster read. Never raises for broker trouble: it returns a
        snapshot whose ``failure`` says what went wrong.

        ``legacy=False`` does not read workers without ccs_beat with the stock
        commands (three more round trips); they count as unreadable instead.
        The worker guard uses it to keep its decision within its timeout.
        ``ids``: emissions to ask about (a worker that received one and no
        longer holds it says so: :meth:`Snapshot.done`).
        """
        started_wall, started = time.time(), time.monotonic()
        deadline = started + self.timeout
        self.reads += 1
        wanted = sorted(set(names)) if names is not None else None
        asked = sorted(set(ids)) if ids else None
        for attempt in (1, 2):
            try:
                return self._read(wanted, started_wall, started, deadline, legacy, asked)
            except Exception as exc:  # noqa: BLE001 - any broker/transport error
                self.close()
                # one retry on a fresh connection: a transport glitch (kombu's
                # filesystem transport can hand out a half-written reply file)
                # should not decide an entry by on_unknown. It shares the
                # read's budget: a guard decides within D + T whatever happens,
                # or its peers would take it for committed while it skips
                if attempt == 1 and deadline - time.monotonic() > MIN_RETRY:
                    logger.info("ccs_beat: cluster read failed (%r); retrying once within "
                                "the remaining %.2fs", exc, deadline - time.monotonic())
                    continue
                logger.warning("ccs_beat: cluster read failed: %r", exc)
                return Snapshot(taken_at=started_wall, elapsed=time.monotonic() - started,
                                failure=repr(exc), timeout=self.timeout)
        raise AssertionError("unreachable")

    def _read(self, names: list[str] | None, started_wall: float, started: float,
              deadline: float, legacy_read: bool = True,
              ids: list[str] | None = None) -> Snapshot:
        conn = self._connection(max(deadline - time.monotonic(), MIN_RETRY))
        mailbox = self.app.control.mailbox(conn)
        chan = conn.default_channel
        ticket = uuid()
        expected = set(self.membership.expected())
        bodies: dict[str, Any] = {}
        undecodable: list[str] = []
        surprise = False

        def on_decode_error(message: Any, exc: Exception) -> None:
            # a reply that is not even JSON (a broken or hostile process on the
            # broker): name it and read on -- it must not void the whole read
            undecodable.append(repr(exc)[:120])
            logger.warning("ccs_beat: ignoring a reply that cannot be decoded: %r", exc)

        def on_message(body: Any, message: Any) -> None:
            nonlocal surprise
            if not isinstance(body, Mapping):
                logger.warning("ccs_beat: ignoring a non-dict reply %r", body)
                return
            if message.headers.get("ticket") != ticket:
                # a late reply to an earlier read: it still tells us who exists
                for host in body:
                    if isinstance(host, str) and host not in expected:
                        self.membership.last_seen.setdefault(host, time.monotonic())
                return
            for host, payload in body.items():
                bodies[str(host)] = payload
                if host not in expected:
                    surprise = True
                if isinstance(payload, Mapping) and isinstance(payload.get("peers"), list):
                    expected.update(p for p in payload["peers"] if isinstance(p, str))

        def done() -> bool:
            return bool(expected) and not surprise and expected <= bodies.keys()

        queue = mailbox.reply_queue
        consumer = Consumer(chan, [queue], accept=mailbox.accept, no_ack=True,
                            callbacks=[on_message], on_decode_error=on_decode_error)
        with consumer:
            # kombu.pidbox has no public "publish, then collect until N named
            # replies" call; this is Mailbox._broadcast with a smarter stop.
            arguments: dict[str, Any] = {"names": names}
            if ids:
                arguments["ids"] = ids
            mailbox._publish(COMMAND, arguments, reply_ticket=ticket, channel=chan,
                             timeout=self.timeout)
            self.broadcasts += 1
            broadcasts = 1
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    conn.drain_events(timeout=remaining)
                except TimeoutError:
                    break
        chan.after_reply_message_received(queue.name)

        def read_legacy(hosts: list[str], views: dict[str, WorkerView],
                        garbled: dict[str, str]) -> int:
            return self._read_legacy(conn, hosts, views, garbled)

        return snapshot_from_replies(
            bodies, self.membership, clock=time.monotonic, taken_at=started_wall,
            started=started, timeout=self.timeout, undecodable=undecodable,
            read_legacy=read_legacy if legacy_read else None, broadcasts=broadcasts)

    def _read_legacy(self, conn: Any, hosts: list[str], views: dict[str, WorkerView],
                     garbled: dict[str, str]) -> int:
        """Read workers without ccs_beat with the three stock commands."""
        logger.debug("ccs_beat: %s do(es) not serve %s; using stock inspect",
                     ", ".join(hosts), COMMAND)
        inspect = self.app.control.inspect(destination=hosts, timeout=self.timeout,
                                           limit=len(hosts), connection=conn)
        per_state = {state: getattr(inspect, state)() or {} for state in STATES}
        self.broadcasts += len(STATES)
        for host in hosts:
            replies = {state: per_state[state].get(host) for state in STATES}
            try:
                views[host] = parse_legacy(host, replies)
            except GarbledReply as exc:
                garbled[host] = str(exc)
                logger.warning("ccs_beat: unusable stock inspect reply from %s: %s", host, exc)
        return len(STATES)
