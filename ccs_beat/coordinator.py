"""Glue between a beat scheduler and the pure decision.

A :class:`Coordinator` belongs to one scheduler instance. It knows the
settings, parses each entry's policy, shares one cluster read across a burst of
due entries, keeps the ledger, prepares the message options of an emission
(no ``singleton`` key, an ``expires``, the sender's stamp), logs every decision
and sends the signals. It knows nothing about how a scheduler stores its
entries or its ledger: :mod:`ccs_beat.scheduler` and the contrib adapters do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import states
from celery.beat import BeatLazyFunc
from celery.utils.time import maybe_iso8601, maybe_make_aware
from kombu.utils.uuid import uuid

from . import signals
from .cluster import ClusterReader, Snapshot, check_broadcast_support
from .control import STAMP_HEADER, make_stamp
from .decide import Decision, decide
from .errors import ConfigurationError, UnkeyableError
from .identity import task_key
from .ledger import Emission, Ledger
from .logs import get_logger
from .policy import Policy, Settings, load_settings, parse_policy
from .task import task_default

logger = get_logger("ccs_beat")

#: the per-entry option ccs_beat reads (and removes before sending)
OPTION = "singleton"

#: "due, and next in more than this" is no next run: django-celery-beat's
#: clocked schedule says that (100,000,000 s) once its time has passed; a
#: schedule that is merely far off (a crontab on 29 February) is not due
NO_NEXT_RUN = 366 * 86400.0
#: how long the ledger counts an emission nobody saw, of an entry with no next run
LAST_RUN_HORIZON = 300.0


@dataclass(frozen=True)
class Verdict:
    """What was decided for one due entry, and with what."""

    policy: Policy | None
    key: str | None
    decision: Decision | None   # None: the entry is not checked (allow or invalid)
    buffered: bool = False
    #: wall clock when beat took the entry up, before the cluster read: the
    #: run's own time, from which its default expiry is measured
    judged_at: float | None = None

    @property
    def emit(self) -> bool:
        return self.decision is None or self.decision.emit


def _lazy(value: Any) -> bool:
    return isinstance(value, BeatLazyFunc)


def _arguments(entry: Any) -> tuple[list[Any], dict[str, Any]]:
    """An entry's args and kwargs as a list and a dict, or raise naming the entry:
    a row or a Redis entry can hold ``5`` or ``[1]`` where they belong."""
    args, kwargs = entry.args or (), entry.kwargs or {}
    if not isinstance(args, (list, tuple)):
        raise UnkeyableError(f"{describe_entry(entry.name)}: args is {args!r:.60} "
                             f"(a {type(args).__name__}), not a list")
    if not isinstance(kwargs, Mapping):
        raise UnkeyableError(f"{describe_entry(entry.name)}: kwargs is {kwargs!r:.60} "
                             f"(a {type(kwargs).__name__}), not a dict")
    return list(args), dict(kwargs)


def entry_arguments(entry: Any) -> tuple[list[Any], dict[str, Any], bool]:
    """``(args, kwargs, had_lazy)`` of an entry, with BeatLazyFunc values called."""
    args, kwargs = _arguments(entry)
    had_lazy = any(map(_lazy, args)) or any(map(_lazy, kwargs.values()))
    if had_lazy:
        args = [a() if _lazy(a) else a for a in args]
        kwargs = {k: v() if _lazy(v) else v for k, v in kwargs.items()}
    return args, kwargs, had_lazy


def due_since(entry: Any) -> float | None:
    """Wall-clock time at which a due entry became due (None: cannot tell)."""
    try:
        remaining = entry.schedule.remaining_estimate(entry.last_run_at)
        return time.time() + remaining.total_seconds()
    except Exception:  # noqa: BLE001 - exotic schedule: treat it as due just now
        return None


def _own_expiry(name: str, own: Any) -> Any:
    """An entry's own ``expires`` as seconds or a datetime. Celery also takes
    an ISO 8601 string; anything else is named at WARNING and the default
    expiry used, never silently replaced."""
    if not isinstance(own, str):
        return own
    try:
        return maybe_iso8601(own)
    except (TypeError, ValueError):
        logger.warning("ccs_beat: %s: expires %r is neither seconds nor an ISO 8601 time; "
                       "sending it with the default expiry", describe_entry(name), own[:80])
        return None


def describe_entry(name: str) -> str:
    return f"beat entry {name!r}"


class Coordinator:
    """Per-scheduler state and decisions. See the module docstring."""

    def __init__(self, app: Any, sender: Any, ledger: Ledger | None = None,
                 settings: Settings | None = None, reader: ClusterReader | None = None,
                 names: Callable[[], Iterable[str] | None] | None = None) -> None:
        self.app = app
        self.sender = sender
        self.settings = settings if settings is not None else load_settings(app.conf)
        self.reader = reader or ClusterReader(app, timeout=self.settings.inspect_timeout,
                                              worker_expiry=self.settings.worker_expiry)
        self.ledger = ledger if ledger is not None else Ledger()
        self._names = names
        self._snapshot: Snapshot | None = None
        self._snapshot_at = 0.0      # monotonic, when the read began
        self._snapshot_wall = 0.0    # wall clock, when the read began
        self._next_poll = 0.0
        self._policies: dict[tuple[str, str], Policy] = {}
        self._judged: dict[str, Verdict] = {}
        self._result_warned = False

    # -- configuration ------------------------------------------------------

    def policy_for(self, name: str, options: Mapping[str, Any] | None,
                   task: Any = None) -> Policy:
        """The policy of entry ``name`` of task ``task`` (which must be a task
        name: a row or a Redis entry can hold anything): its option, else the
        task's declaration, else the app default. Parsed once per distinct
        option value."""
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(f"{describe_entry(name)}: options is {options!r:.60}, "
                                     "not a dict")
        if task is not None and not isinstance(task, str):
            raise ConfigurationError(f"{describe_entry(name)}: task is {task!r:.60}, not a "
                                     "task name")
        raw = (options or {}).get(OPTION)
        cache_key = (name, task, repr(raw))
        policy = self._policies.get(cache_key)
        if policy is None:
            # an entry's options may come from a database row or Redis: only
            # key functions registered in code may be named
            policy = parse_policy(raw, default=task_default(self.app, task, self.settings),
                                  where=f"{describe_entry(name)}: {OPTION}",
                                  functions=self.settings.key_functions)
            self._policies[cache_key] = policy
        return policy

    def key_for(self, entry: Any, policy: Policy) -> str:
        args, kwargs, _ = entry_arguments(entry)
        try:
            return task_key(entry.task, args, kwargs, policy.key)
        except UnkeyableError as exc:
            raise UnkeyableError(f"{describe_entry(entry.name)}: {exc}") from exc

    def validate(self, entries: Mapping[str, Any], *,
                 check_transport: bool = True) -> dict[str, Policy]:
        """Check every entry's policy and key; raise one error listing all
        problems. Then, with ``check_transport``, that the broker can broadcast
        (a connection: a caller validating entries one by one asks once)."""
        problems, policies = [], {}
        for name, entry in entries.items():
            try:
                policy = self.policy_for(name, getattr(entry, "options", None),
                                         getattr(entry, "task", None))
                if policy.checked:
                    args, kwargs, lazy = entry_arguments_unevaluated(entry)
                    if not lazy:
                        try:
                            task_key(entry.task, args, kwargs, policy.key)
                        except UnkeyableError as exc:
                            raise UnkeyableError(
                                f"{describe_entry(name)}: arguments cannot be keyed: {exc}"
                            ) from exc
                policies[name] = policy
            except ConfigurationError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigurationError(
                "ccs_beat: invalid configuration:\n  - " + "\n  - ".join(problems))
        if check_transport and (self.settings.default_policy.checked
                                or any(p.checked for p in policies.values())):
            check_broadcast_support(self.app)
        return policies

    # -- cluster reads --------------------------------------------------------

    def snapshot(self, due_at: float | None = None) -> Snapshot:
        """The burst's cluster read, shared by every entry due in the burst.

        An entry that was already due (``due_at``, wall clock) when the read
        began is decided by it however long the burst takes: that is the
        decision an instantaneous burst would have made, and everything this
        beat sent since is in the ledger. An entry that became due later
        reuses the read only while it is younger than ``burst_max_age``. So a
        burst of 10,000 entries, which stock beat takes minutes to send, still
        costs one broadcast."""
        if self._snapshot is not None:
            fresh = time.monotonic() - self._snapshot_at <= self.settings.burst_max_age
            if fresh or (due_at is not None and due_at <= self._snapshot_wall):
                return self._snapshot
        wanted = self._names() if self._names is not None else None
        names = set(wanted) if wanted is not None else None   # None: every task name
        wall, started = time.time(), time.monotonic()
        snap = self.reader.read(names, ids=self.ledger.unseen())
        self._snapshot, self._snapshot_at, self._snapshot_wall = snap, started, wall
        logger.debug("ccs_beat: cluster read: %s", snap.summary())
        return snap

    def end_burst(self) -> None:
        self._snapshot = None

    def _result_ready(self) -> Callable[[str], bool | None] | None:
        backend = self.app.backend
        from celery.backends.base import DisabledBackend
        from celery.backends.rpc import RPCBackend
        if isinstance(backend, (DisabledBackend, RPCBackend)):
            return None

        def ready(task_id: str) -> bool | None:
            try:
                return backend.get_state(task_id) not in states.UNREADY_STATES
            except Exception as exc:  # noqa: BLE001 - a backend outage must not stop beat
                if not self._result_warned:
                    logger.warning("ccs_beat: cannot ask the result backend about %s (%r); "
                                   "relying on the cluster read and expiry", task_id, exc)
                    self._result_warned = True
                return None
        return ready

    # -- decisions ------------------------------------------------------------

    def judge(self, entry: Any, *, buffered: bool = False) -> Verdict:
        """Decide one due entry. Never raises: bad data means plain beat."""
        judged_at = time.time()
        try:
            policy = self.policy_for(entry.name, entry.options, entry.task)
        except Exception as exc:  # noqa: BLE001 - bad stored data must not stop beat
            logger.error("ccs_beat: %s; sending it without the singleton check", exc)
            return self._remember(entry, Verdict(None, None, None))
        if not policy.checked:
            return self._remember(entry, Verdict(policy, None, None))
        try:
            key = self.key_for(entry, policy)
        except Exception as exc:  # noqa: BLE001 - bad stored data must not stop beat
            logger.error("ccs_beat: %s; sending it without the singleton check", exc)
            return self._remember(entry, Verdict(policy, None, None))
        try:
            snap = self.snapshot(None if buffered else due_since(entry))
            now = time.time()
            outstanding = self.ledger.outstanding(key, snap, now, self._result_ready())
            matches = [] if snap.failure else snap.matching(policy.key, key, entry.task)
            decision = decide(policy, matches=matches, outstanding=outstanding,
                              incomplete=snap.incomplete_reason(entry.task), now=now)
        except Exception as exc:   # beat must go on; on_unknown decides
            logger.exception("ccs_beat: error while deciding %s; on_unknown=%s decides",
                             describe_entry(entry.name), policy.on_unknown)
            decision = decide(policy, matches=[], outstanding=[], now=time.time(),
                              incomplete=f"error while deciding: {exc!r:.200}")
        return self._remember(entry, Verdict(policy, key, decision, buffered=buffered,
                                             judged_at=judged_at))

    def _remember(self, entry: Any, verdict: Verdict) -> Verdict:
        # apply_entry() -> Celery -> apply_async() -> prepare() picks it up
        self._judged[entry.name] = verdict
        return verdict

    def discard(self, entry: Any) -> None:
        """Forget the verdict of an entry that will not be sent after all."""
        self._judged.pop(entry.name, None)

    def skipped(self, entry: Any, verdict: Verdict, *, runs_once: bool = False) -> None:
        """Log, signal and remember a skipped run: under ``buffer_one``, and
        always for an entry that ``runs_once`` (a one-off, whose schedule may
        not look at it again for years: it goes out as soon as nothing
        blocks it)."""
        decision = verdict.decision
        assert decision is not None and verdict.policy is not None
        self._judged.pop(entry.name, None)
        remembered = decision.buffer or runs_once
        if remembered:
            self.ledger.set_pending(entry.name, True)
        level = logging.WARNING if decision.unknown else logging.INFO
        logger.log(level, "ccs_beat: skipped %r (%s): %s [overlap=%s%s]", entry.name,
                   entry.task, decision.describe(), verdict.policy.overlap,
                   ", one run buffered" if decision.buffer
                   else ", a one-off: sent once nothing blocks it" if remembered else "")
        signals.entry_skipped.send(sender=self.sender, entry=entry, key=verdict.key,
                                   decision=decision)

    # -- emissions ------------------------------------------------------------

    def prepare(self, entry: Any) -> tuple[Any, Verdict, float | None]:
        """A copy of ``entry`` whose options are ready to send, the verdict it
        was sent under, and its expiry as a wall-clock time (or None)."""
        verdict = self._judged.pop(entry.name, None)
        if verdict is None:
            verdict = self._plain_verdict(entry)
        options = {k: v for k, v in (entry.options or {}).items() if k != OPTION}
        headers = options.get("headers")
        if isinstance(headers, Mapping) and STAMP_HEADER in headers:
            # a stamp is beat's word that the message is a singleton: one that
            # came with the entry (a row's headers) is not beat's
            options["headers"] = {k: v for k, v in headers.items() if k != STAMP_HEADER}
        expires_at = None
        if verdict.key is not None and verdict.policy is not None:
            now = time.time()
            expires = self._expires(entry, verdict.policy, options, now,
                                    since=verdict.judged_at)
            if expires is not None:
                options["expires"] = expires
                expires_at = now + expires
            elif self._runs_no_more(entry):
                # nothing to expire before; the ledger still must not count an
                # unseen emission for years (the row may be armed again)
                expires_at = now + LAST_RUN_HORIZON
            headers = dict(options.get("headers") or {})
            headers[STAMP_HEADER] = make_stamp(verdict.key, entry=entry.name, sent_at=now)
            options["headers"] = headers
            # beat picks the id so the ledger can hold it before the publish
            options.setdefault("task_id", uuid())
        # a shallow copy that works for any entry class (ScheduleEntry.__reduce__,
        # which copy.copy would use, does not fit subclasses such as ModelEntry)
        sending = object.__new__(type(entry))
        sending.__dict__.update(entry.__dict__)
        sending.options = options
        return sending, verdict, expires_at

    def _plain_verdict(self, entry: Any) -> Verdict:
        """Verdict for an emission that did not go through :meth:`judge`
        (``apply_async`` called directly): record it if it is a singleton."""
        try:
            policy = self.policy_for(entry.name, entry.options, entry.task)
            key = self.key_for(entry, policy) if policy.checked else None
        except ConfigurationError:
            return Verdict(None, None, None)
        return Verdict(policy, key, None)

    def _expires(self, entry: Any, policy: Policy, options: Mapping[str, Any],
                 now: float, since: float | None = None) -> float | None:
        """Seconds until the message expires: the policy's, the entry's own
        ``expires`` option, or (default) until the entry's next run, less a
        margin, so an old message is gone before the next one is sent. The
        next run is counted from ``since`` (when beat took this run up), not
        from the send: a slow cluster read must not make the message outlive
        the next due time. None, with a WARNING, when the schedule cannot say
        when it runs next or gives no time at all to its next run."""
        if policy.expires is not None:
            return policy.expires
        own = _own_expiry(entry.name, options.get("expires"))
        if isinstance(own, datetime):
            # a naive time is in the app's zone, as Celery reads it
            return max(0.0, maybe_make_aware(own, self.app.timezone).timestamp() - now)
        if isinstance(own, (int, float)) and not isinstance(own, bool):
            return float(own)
        try:
            taken_up = entry.default_now()
            if since is not None and now > since:
                taken_up -= timedelta(seconds=now - since)
            due, next_in = entry.schedule.is_due(taken_up)
            next_in = float(next_in)
        except Exception:  # noqa: BLE001 - exotic schedule: no default expiry
            logger.warning("ccs_beat: cannot tell when %s runs next; sending it without "
                           "an expiry", describe_entry(entry.name))
            return None
        if due and next_in > NO_NEXT_RUN:
            logger.info("ccs_beat: %s has no next run (a one-off); sending it without an "
                        "expiry", describe_entry(entry.name))
            return None
        if next_in <= 0:
            logger.warning("ccs_beat: %s is due again already; sending it without an "
                           "expiry", describe_entry(entry.name))
            return None
        # due again already (the read took longer than the period): the
        # schedule then counts to the run after, which this message must not
        # outlive either
        return max(next_in - min(1.0, next_in * 0.1), 0.05)

    def _runs_no_more(self, entry: Any) -> bool:
        """True when the entry's schedule has no next run (a clocked one-off)."""
        try:
            due, next_in = entry.schedule.is_due(entry.default_now())
            return bool(due) and float(next_in) > NO_NEXT_RUN
        except Exception:  # noqa: BLE001 - exotic schedule: cannot tell
            return False

    def write_ahead(self, entry: Any, sending: Any, verdict: Verdict,
                    expires_at: float | None) -> dict[str, Any] | None:
        """Put a singleton emission in the ledger *before* it is published.

        Returns the journal record the scheduler must store before sending
        (None for an entry that is not checked)."""
        task_id = (sending.options or {}).get("task_id")
        if verdict.key is None or not task_id:
            return None
        return self.ledger.note_sending(entry.name, Emission(
            task_id=str(task_id), key=verdict.key, sent_at=time.time(),
            expires_at=expires_at))

    def withdraw(self, entry: Any, task_id: str) -> dict[str, Any]:
        """The publish of ``task_id`` failed: it is not outstanding after all."""
        return self.ledger.withdraw(entry.name, task_id)

    def sent(self, entry: Any, verdict: Verdict, result: Any, expires_at: float | None,
             buffered: bool = False, noted: str | None = None) -> None:
        """Log and signal an emission; record it in the ledger unless it was
        written ahead (``noted`` is the id :meth:`write_ahead` recorded)."""
        task_id = getattr(result, "id", None)
        if verdict.key is not None and task_id:
            if task_id != noted:
                self.ledger.record(entry.name, Emission(task_id=task_id, key=verdict.key,
                                                        sent_at=time.time(),
                                                        expires_at=expires_at))
            self.ledger.set_pending(entry.name, False)
            decision = verdict.decision
            why = decision.reason if decision is not None else "sent directly"
            expiry = ("" if expires_at is None
                      else f", expires in {max(0.0, expires_at - time.time()):.1f}s")
            level = logging.WARNING if decision is not None and decision.unknown else logging.INFO
            logger.log(level, "ccs_beat: emitted %r (%s) as %s%s: %s%s", entry.name,
                       entry.task, task_id, " (buffered run)" if buffered else "", why, expiry)
        signals.entry_emitted.send(sender=self.sender, entry=entry, key=verdict.key,
                                   decision=verdict.decision, task_id=task_id,
                                   buffered=buffered)

    # -- buffer_one -----------------------------------------------------------

    def poll_due(self) -> bool:
        """True when buffered runs should be re-checked now."""
        now = time.monotonic()
        if now < self._next_poll:
            return False
        self._next_poll = now + self.settings.buffer_poll_interval
        return True

    def until_next_poll(self) -> float:
        return max(0.0, self._next_poll - time.monotonic())

    def close(self) -> None:
        self.reader.close()


def entry_arguments_unevaluated(entry: Any) -> tuple[list[Any], dict[str, Any], bool]:
    """Like :func:`entry_arguments` but never calls lazy values (used at load)."""
    args, kwargs = _arguments(entry)
    lazy = any(map(_lazy, args)) or any(map(_lazy, kwargs.values()))
    return args, kwargs, lazy
