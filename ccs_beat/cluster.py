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

The pure parts live apart: the values in :mod:`ccs_beat.snapshot`, the reply
parsing in :mod:`ccs_beat.replies`. :class:`ClusterReader` only broadcasts and
collects; it is the one piece that talks to a broker.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kombu import Consumer
from kombu.utils.uuid import uuid

from .errors import ConfigurationError
from .logs import get_logger
from .policy import Settings
from .replies import COMMAND, STATES, GarbledReply, parse_legacy, snapshot_from_replies
from .snapshot import Membership, Snapshot, WorkerView

logger = get_logger("ccs_beat.cluster")

#: the least time left in a read's budget worth a retry, in seconds
MIN_RETRY = 0.05

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

    @classmethod
    def for_settings(cls, app: Any, settings: Settings, *,
                     timeout: float | None = None) -> ClusterReader:
        """A reader with beat's timeout and worker expiry (``timeout``: another)."""
        return cls(app, timeout=settings.inspect_timeout if timeout is None else timeout,
                   worker_expiry=settings.worker_expiry)

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
        replies = _Replies(uuid(), self.membership)
        self._broadcast_and_collect(conn, replies, deadline,
                                    {"names": names, **({"ids": ids} if ids else {})})

        def read_legacy(hosts: list[str], views: dict[str, WorkerView],
                        garbled: dict[str, str]) -> int:
            return self._read_legacy(conn, hosts, views, garbled)

        return snapshot_from_replies(
            replies.bodies, self.membership, clock=time.monotonic, taken_at=started_wall,
            started=started, timeout=self.timeout, undecodable=replies.undecodable,
            read_legacy=read_legacy if legacy_read else None, broadcasts=1)

    def _broadcast_and_collect(self, conn: Any, replies: _Replies, deadline: float,
                               arguments: dict[str, Any]) -> None:
        """Publish the command once, then drain replies until every expected
        worker has answered or the deadline passes. (kombu.pidbox has no
        public "publish, then collect until N named replies" call; this is
        ``Mailbox._broadcast`` with a smarter stop.)"""
        mailbox = self.app.control.mailbox(conn)
        chan = conn.default_channel
        queue = mailbox.reply_queue
        consumer = Consumer(chan, [queue], accept=mailbox.accept, no_ack=True,
                            callbacks=[replies.on_message],
                            on_decode_error=replies.on_decode_error)
        with consumer:
            mailbox._publish(COMMAND, arguments, reply_ticket=replies.ticket, channel=chan,
                             timeout=self.timeout)
            self.broadcasts += 1
            while not replies.complete():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    conn.drain_events(timeout=remaining)
                except TimeoutError:
                    break
        chan.after_reply_message_received(queue.name)

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



class _Replies:
    """The replies to one broadcast, as they arrive, and whether every worker
    expected has answered (see the module docstring)."""

    def __init__(self, ticket: str, membership: Membership) -> None:
        self.ticket = ticket
        self.membership = membership
        self.expected = set(membership.expected())
        self.bodies: dict[str, Any] = {}
        self.undecodable: list[str] = []
        self.surprise = False   # a worker answered that we did not expect

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        # a reply that is not even JSON (a broken or hostile process on the
        # broker): name it and read on -- it must not void the whole read
        self.undecodable.append(repr(exc)[:120])
        logger.warning("ccs_beat: ignoring a reply that cannot be decoded: %r", exc)

    def on_message(self, body: Any, message: Any) -> None:
        if not isinstance(body, Mapping):
            logger.warning("ccs_beat: ignoring a non-dict reply %r", body)
            return
        if message.headers.get("ticket") != self.ticket:
            # a late reply to an earlier read: it still tells us who exists
            for host in body:
                if isinstance(host, str) and host not in self.expected:
                    self.membership.last_seen.setdefault(host, time.monotonic())
            return
        for host, payload in body.items():
            self.bodies[str(host)] = payload
            if host not in self.expected:
                self.surprise = True
            if isinstance(payload, Mapping) and isinstance(payload.get("peers"), list):
                self.expected.update(p for p in payload["peers"] if isinstance(p, str))

    def complete(self) -> bool:
        return bool(self.expected) and not self.surprise and self.expected <= self.bodies.keys()
