"""Glue between a beat scheduler and the pure decision: the one path every
emission and every skip takes.

A :class:`Coordinator` belongs to one scheduler instance. It resolves each
entry's policy and key, shares one cluster read across a burst of due
entries, keeps the ledger in the scheduler's :class:`~ccs_beat.ledger_store.
LedgerStore`, and runs each decision through :meth:`Coordinator.handle`:
judge, write ahead, publish, withdraw on failure, record, report (log, signal,
event file) and tell the scheduler. A scheduler adapter gives it two things:
how to publish a prepared entry (its stock ``apply_async``) and, for buffered
runs, how to find and reserve an entry. It knows nothing else about how a
scheduler stores its entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from celery import states
from kombu.utils.uuid import uuid

from . import signals
from .cluster import ClusterReader, check_broadcast_support
from .control import STAMP_HEADER, make_stamp
from .decide import Decision, decide_entry
from .entries import (
    LAST_RUN_HORIZON,
    OPTION,
    BeatEntry,
    copy_with,
    describe_entry,
    due_since,
    enabled,
    expiry,
    runs_no_more,
)
from .errors import ConfigurationError
from .events import BeatAction, DecisionEvent, Reason
from .ledger import Emission, Ledger
from .ledger_store import LedgerStore, MemoryLedgerStore
from .logs import get_logger
from .policies import EntryPolicies
from .policy import Policy, Settings, load_settings
from .reporting import report
from .snapshot import Snapshot

logger = get_logger("ccs_beat")

#: sends a prepared entry (options final: no ``singleton`` key, an expiry, the
#: stamp, the task id) and returns what ``apply_async`` returns
Publish = Callable[[Any], Any]
#: told of every decision about a singleton (the Django adapter keeps the last)
OnDecision = Callable[[Any, DecisionEvent], None]


@dataclass(frozen=True)
class Verdict:
    """What was decided for one due entry, and with what."""

    policy: Policy | None       # None: the entry's option or arguments are invalid
    key: str | None             # None: the entry is not checked
    decision: Decision | None   # None: not checked, or sent without a decision
    buffered: bool = False      # a remembered buffer_one run
    #: wall clock when beat took the entry up, before the cluster read: the
    #: run's own time, from which its default expiry is measured
    judged_at: float | None = None
    #: wall clock when the cluster read it was decided by began
    read_at: float | None = None
    #: sent by a direct ``apply_async`` call, not decided
    direct: bool = False
    #: a run of the schedule (False: a run by hand, outside it, which has no
    #: next run to expire before: sent without a default expiry)
    on_schedule: bool = True

    @property
    def emit(self) -> bool:
        return self.decision is None or self.decision.emit

    def reason(self) -> Reason:
        """The reason code of an emission or a skip."""
        if self.decision is not None:
            return self.decision.reason
        if self.direct:
            return Reason.SENT_DIRECTLY
        if self.policy is None:
            return Reason.INVALID_ENTRY
        return Reason.OVERLAP_ALLOWED


#: what an emission sent without a decision says
_UNDECIDED = {
    Reason.OVERLAP_ALLOWED: "overlap allowed by policy",
    Reason.INVALID_ENTRY: "sent without the singleton check: the entry is invalid",
    Reason.SENT_DIRECTLY: "sent directly",
}


class Coordinator:
    """Per-scheduler state and decisions. See the module docstring."""

    def __init__(self, app: Any, sender: Any, *, store: LedgerStore | None = None,
                 settings: Settings | None = None, reader: ClusterReader | None = None,
                 names: Callable[[], Iterable[str] | None] | None = None,
                 in_charge: Callable[[], bool] | None = None,
                 on_decision: OnDecision | None = None) -> None:
        self.app = app
        self.sender = sender
        self.settings = settings if settings is not None else load_settings(app.conf)
        self.policies = EntryPolicies(app, self.settings)
        self.reader = reader or ClusterReader.for_settings(app, self.settings)
        self.store = store if store is not None else MemoryLedgerStore()
        self.ledger = Ledger()
        self._names = names
        self._in_charge = in_charge or (lambda: True)
        self._on_decision = on_decision
        self._snapshot: Snapshot | None = None
        self._snapshot_at = 0.0      # monotonic, when the read began
        self._snapshot_wall = 0.0    # wall clock, when the read began
        self._next_poll = 0.0
        self._result_warned = False

    # -- configuration ------------------------------------------------------

    def policy_for(self, name: str, options: Mapping[str, Any] | None,
                   task: Any = None) -> Policy:
        return self.policies.policy_for(name, options, task)

    def validate(self, entries: Mapping[str, Any], *,
                 check_transport: bool = True) -> dict[str, Policy]:
        """Check every entry's policy and key; raise one error listing all
        problems. Then, with ``check_transport``, that the broker can broadcast
        (a connection: a caller validating entries one by one asks once)."""
        policies = self.policies.validate(entries)
        if check_transport and (self.settings.default_policy.checked
                                or any(p.checked for p in policies.values())):
            check_broadcast_support(self.app)
        return policies

    def in_charge(self) -> bool:
        """False while another beat is in charge (see the scheduler's hook)."""
        return self._in_charge()

    # -- the ledger ---------------------------------------------------------------

    def load_ledger(self, keep_entries: Iterable[str]) -> None:
        """Read the ledger from the store (journal replayed) and drop what
        entries no longer in the schedule left behind."""
        ledger = self.store.load()
        ledger.forget(keep_entries)
        self.ledger = ledger

    def save_ledger(self) -> None:
        """Save the ledger if it changed and this beat is in charge; a store
        that fails is logged, and beat goes on (the journal still holds what
        was sent)."""
        if not self.ledger.dirty:
            return
        if not self._in_charge():
            logger.debug("ccs_beat: not saving the ledger: another beat is in charge")
            return
        try:
            self.store.save(self.ledger)
            self.ledger.dirty = False
        except Exception as exc:
            logger.error("ccs_beat: could not save the ledger to %s: %r", self.store.where,
                         exc, exc_info=True)

    def _journal(self, record: dict[str, Any]) -> None:
        try:
            self.store.append(record)
        except Exception as exc:
            logger.error("ccs_beat: could not write the ledger's journal before sending "
                         "(%r); a beat killed before the end of this burst would forget "
                         "entry %r's emission", exc, record.get("entry"), exc_info=True)

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
        """A burst of due entries is over: the next one reads the cluster again."""
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

    # -- the one path -----------------------------------------------------------

    def handle(self, entry: BeatEntry, publish: Publish, *, runs_once: bool = False,
               on_schedule: bool = True) -> DecisionEvent | None:
        """Decide a due entry and carry the decision out: publish it, or
        skip it (remembered under ``buffer_one``, and always for an entry
        that ``runs_once``). Returns the decision's event (None when this
        beat is not in charge and sent nothing). Raises what ``publish``
        raises, after withdrawing the emission from the ledger."""
        verdict = self.judge(entry)
        if not on_schedule:
            verdict = replace(verdict, on_schedule=False)
        if verdict.emit:
            return self.send(entry, verdict, publish)[1]
        return self._skip(entry, verdict, runs_once=runs_once)

    def judge(self, entry: BeatEntry, *, buffered: bool = False) -> Verdict:
        """Decide one due entry. Never raises: bad data means plain beat."""
        judged_at = time.time()
        try:
            policy = self.policies.of(entry)
        except Exception as exc:
            # a named data error needs no traceback; anything else does
            logger.error("ccs_beat: %s; sending it without the singleton check", exc,
                         exc_info=not isinstance(exc, ConfigurationError))
            return Verdict(None, None, None)
        if not policy.checked:
            return Verdict(policy, None, None)
        try:
            key = self.policies.key_for(entry, policy)
        except Exception as exc:
            # a named data error needs no traceback; anything else does
            logger.error("ccs_beat: %s; sending it without the singleton check", exc,
                         exc_info=not isinstance(exc, ConfigurationError))
            return Verdict(None, None, None)   # invalid: sent as plain beat would
        try:
            snap = self.snapshot(None if buffered else due_since(entry))
            now = time.time()
            outstanding = self.ledger.outstanding(key, snap, now, self._result_ready())
            matches = [] if snap.failure else snap.matching(policy.key, key, entry.task)
            decision = decide_entry(policy, matches=matches, outstanding=outstanding,
                                    incomplete=snap.incomplete_reason(entry.task), now=now)
        except Exception as exc:   # beat must go on; on_unknown decides
            logger.exception("ccs_beat: error while deciding %s; on_unknown=%s decides",
                             describe_entry(entry.name), policy.on_unknown)
            decision = decide_entry(policy, matches=[], outstanding=[], now=time.time(),
                                    incomplete=f"error while deciding: {exc!r:.200}")
        return Verdict(policy, key, decision, buffered=buffered, judged_at=judged_at,
                       read_at=self._snapshot_wall if self._snapshot is not None else None)

    def unjudged(self, entry: BeatEntry) -> Verdict:
        """Verdict for an emission that did not go through :meth:`judge`
        (``apply_async`` called directly): recorded if it is a singleton."""
        try:
            policy = self.policies.of(entry)
            key = self.policies.key_for(entry, policy) if policy.checked else None
        except ConfigurationError:
            return Verdict(None, None, None, direct=True)
        return Verdict(policy, key, None, direct=True)

    def send(self, entry: BeatEntry, verdict: Verdict,
             publish: Publish) -> tuple[Any, DecisionEvent | None]:
        """Publish ``entry`` under ``verdict``: written ahead to the ledger
        and its journal, withdrawn if the publish fails, then reported.
        Returns ``(result, event)``; ``(None, None)`` when another beat is in
        charge (a standby must not publish)."""
        if not self._in_charge():
            logger.warning("ccs_beat: not sending %r: another beat is in charge of the "
                           "schedule", entry.name)
            return None, None
        sending, expires_at = self.prepare(entry, verdict)
        noted = self._write_ahead(entry, sending, verdict, expires_at)
        try:
            result = publish(sending)
        except Exception:
            # not published: do not wait for it (a withdrawn id is never sent)
            if noted is not None:
                self._journal(self.ledger.withdraw(entry.name, noted))
            raise
        task_id = getattr(result, "id", None)
        if verdict.key is not None and task_id:
            if task_id != noted:
                self.ledger.record(entry.name, Emission(task_id=task_id, key=verdict.key,
                                                        sent_at=time.time(),
                                                        expires_at=expires_at))
            self.ledger.set_pending(entry.name, False)
        return result, self._report_sent(entry, verdict, task_id, expires_at)

    def prepare(self, entry: BeatEntry, verdict: Verdict) -> tuple[Any, float | None]:
        """A copy of ``entry`` whose options are ready to send, and its expiry
        as a wall-clock time (or None)."""
        options = {k: v for k, v in (entry.options or {}).items() if k != OPTION}
        headers = options.get("headers")
        if isinstance(headers, Mapping) and STAMP_HEADER in headers:
            # a stamp is beat's word that the message is a singleton: one that
            # came with the entry (a row's headers) is not beat's
            options["headers"] = {k: v for k, v in headers.items() if k != STAMP_HEADER}
        expires_at = None
        if verdict.key is not None and verdict.policy is not None:
            now = time.time()
            expires = expiry(entry, verdict.policy.expires, options, now, self.app.timezone,
                             since=verdict.judged_at) if verdict.on_schedule else None
            if expires is not None:
                options["expires"] = expires
                expires_at = now + expires
            elif verdict.on_schedule and runs_no_more(entry):
                # nothing to expire before; the ledger still must not count an
                # unseen emission for years (the row may be armed again)
                expires_at = now + LAST_RUN_HORIZON
            headers = dict(options.get("headers") or {})
            headers[STAMP_HEADER] = make_stamp(verdict.key, entry=entry.name, sent_at=now)
            options["headers"] = headers
            # beat picks the id so the ledger can hold it before the publish
            options.setdefault("task_id", uuid())
        return copy_with(entry, options), expires_at

    def _write_ahead(self, entry: BeatEntry, sending: Any, verdict: Verdict,
                     expires_at: float | None) -> str | None:
        """Put a singleton emission in the ledger and its journal *before* it
        is published; the id noted (None for an entry that is not checked)."""
        task_id = (sending.options or {}).get("task_id")
        if verdict.key is None or not task_id:
            return None
        self._journal(self.ledger.note_sending(entry.name, Emission(
            task_id=str(task_id), key=verdict.key, sent_at=time.time(),
            expires_at=expires_at)))
        return str(task_id)

    # -- reports ----------------------------------------------------------------

    def _event(self, entry: BeatEntry, verdict: Verdict, action: BeatAction, detail: str,
               **fields: Any) -> DecisionEvent:
        now = time.time()
        policy, decision = verdict.policy, verdict.decision
        return DecisionEvent(
            source="beat", action=action, reason=verdict.reason(), detail=detail, at=now,
            task=entry.task if isinstance(entry.task, str) else None, entry=entry.name,
            key=verdict.key, overlap=policy.overlap if policy else None,
            on_unknown=policy.on_unknown if policy else None,
            blocker=decision.blocker if decision else None,
            unknown=bool(decision and decision.unknown),
            read_age=None if verdict.read_at is None else max(0.0, now - verdict.read_at),
            **fields)

    def _report_sent(self, entry: BeatEntry, verdict: Verdict, task_id: str | None,
                     expires_at: float | None) -> DecisionEvent:
        decision = verdict.decision
        expires_in = None if expires_at is None else max(0.0, expires_at - time.time())
        why = decision.detail if decision is not None else _UNDECIDED[verdict.reason()]
        event = self._event(entry, verdict, BeatAction.EMIT, why, task_id=task_id,
                            buffered=verdict.buffered, expires_in=expires_in)
        level = logging.WARNING if event.unknown else logging.INFO
        report(logger, level, event, "ccs_beat: emitted %r (%s) as %s%s: %s%s", entry.name,
               entry.task, task_id, " (buffered run)" if verdict.buffered else "", why,
               "" if expires_in is None else f", expires in {expires_in:.1f}s",
               sender=self.sender, event_log=self.settings.event_log)
        signals.entry_emitted.send(sender=self.sender, entry=entry, key=verdict.key,
                                   decision=decision, task_id=task_id,
                                   buffered=verdict.buffered, event=event)
        if verdict.key is not None:
            self._tell_scheduler(entry, event)
        return event

    def _skip(self, entry: BeatEntry, verdict: Verdict, *, runs_once: bool) -> DecisionEvent:
        decision = verdict.decision
        assert decision is not None and verdict.policy is not None
        remembered = decision.buffer or runs_once
        if remembered:
            self.ledger.set_pending(entry.name, True)
        event = self._event(entry, verdict, BeatAction.SKIP, decision.detail,
                            buffered=remembered)
        report(logger, logging.WARNING if decision.unknown else logging.INFO, event,
               "ccs_beat: skipped %r (%s): %s [overlap=%s%s]", entry.name, entry.task,
               decision.describe(), verdict.policy.overlap,
               ", one run buffered" if decision.buffer
               else ", a one-off: sent once nothing blocks it" if remembered else "",
               sender=self.sender, event_log=self.settings.event_log)
        signals.entry_skipped.send(sender=self.sender, entry=entry, key=verdict.key,
                                   decision=decision, event=event)
        self._tell_scheduler(entry, event)
        return event

    def _tell_scheduler(self, entry: BeatEntry, event: DecisionEvent) -> None:
        """The scheduler's ``on_decision`` hook. It runs after the decision
        was carried out: a hook that fails must not make a sent message look
        unsent (or a skip look undecided), so it is logged and beat goes on."""
        if self._on_decision is None:
            return
        try:
            self._on_decision(entry, event)
        except Exception as exc:
            logger.error("ccs_beat: the scheduler's on_decision hook failed for %r: %r",
                         entry.name, exc, exc_info=True)

    # -- buffered runs (buffer_one, one-offs) -----------------------------------------

    def begin_buffer_poll(self) -> bool:
        """True, and the next interval begun, when the remembered runs are
        due a re-check (every ``buffer_poll_interval``)."""
        now = time.monotonic()
        if not self.ledger.pending or now < self._next_poll:
            return False
        self._next_poll = now + self.settings.buffer_poll_interval
        return True

    def until_next_poll(self) -> float:
        return max(0.0, self._next_poll - time.monotonic())

    def send_buffered(self, entry_of: Callable[[str], Any], reserve: Callable[[Any], Any],
                      publish: Publish) -> None:
        """Send each remembered run whose blocker has ended. ``entry_of(name)``
        finds the entry (None: gone); ``reserve(entry)`` counts the run as the
        scheduler counts a due one and returns the entry to send."""
        if not self._in_charge():
            return
        for name in sorted(self.ledger.pending):
            self._send_buffered(name, entry_of, reserve, publish)
        self.end_burst()

    def _send_buffered(self, name: str, entry_of: Callable[[str], Any],
                       reserve: Callable[[Any], Any], publish: Publish) -> None:
        """Send the remembered run of entry ``name`` if nothing blocks it any
        more; drop it if the entry is gone, switched off or no longer checked
        (a remembered run goes out at most once, and only for a singleton)."""
        try:
            entry = entry_of(name)
        except Exception as exc:  # noqa: BLE001 - a store hiccup: keep it, retry next poll
            logger.warning("ccs_beat: cannot read entry %r (%r); keeping its buffered run",
                           name, exc)
            return
        if entry is None or not enabled(entry):
            logger.warning("ccs_beat: dropping the buffered run of %r: the entry is %s", name,
                           "gone" if entry is None else "switched off")
            self.ledger.set_pending(name, False)
            return
        verdict = self.judge(entry, buffered=True)
        if verdict.key is None:
            logger.warning("ccs_beat: dropping the buffered run of %r: it is no longer "
                           "a singleton", name)
            self.ledger.set_pending(name, False)
            return
        if not verdict.emit:
            return
        try:
            self.send(reserve(entry), verdict, publish)
        except Exception as exc:
            logger.error("ccs_beat: could not send the buffered run of %r: %r", name, exc,
                         exc_info=True)

    def close(self) -> None:
        self.reader.close()
