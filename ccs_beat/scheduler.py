"""Beat schedulers that decline to emit while an identical task is queued or running.

:class:`SingletonSchedulerMixin` adds the check to any
:class:`celery.beat.Scheduler` that uses the stock ``tick()`` ->
``apply_entry()`` -> ``apply_async()`` path (the default ``PersistentScheduler``
and django-celery-beat's ``DatabaseScheduler``). A subclass says where its
ledger lives by overriding :meth:`~SingletonSchedulerMixin.ccs_load_ledger`,
:meth:`~SingletonSchedulerMixin.ccs_save_ledger` and, for the write-ahead
journal, :meth:`~SingletonSchedulerMixin.ccs_journal_append` and
:meth:`~SingletonSchedulerMixin.ccs_journal_records`.

:class:`SingletonScheduler` is the drop-in for ``celery beat``::

    celery -A proj beat -S ccs_beat.SingletonScheduler    # or: -S ccs
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping
from typing import Any

from celery.beat import PersistentScheduler

from .coordinator import Coordinator, Verdict
from .ledger import Ledger
from .logs import get_logger

logger = get_logger("ccs_beat")

#: shelve key of the ledger in the PersistentScheduler's store
LEDGER_KEY = "ccs_beat_ledger"
#: suffix of the write-ahead journal's file after the schedule file's name
JOURNAL_SUFFIX = ".ccs-journal"


class SingletonSchedulerMixin:
    """Singleton decisions for a Celery beat scheduler. Put it first in the bases."""

    #: created by :meth:`setup_schedule`; None on lazy (introspection) instances
    ccs: Coordinator | None = None
    _ccs_closed = False

    # -- storage hooks (override per scheduler) ------------------------------

    def ccs_load_ledger(self) -> Ledger:
        """The ledger persisted by a previous run of this beat (or an empty one)."""
        return Ledger()

    def ccs_save_ledger(self, ledger: Ledger) -> None:
        """Persist ``ledger`` and empty the journal; called at the end of each
        burst that changed it."""

    def ccs_journal_append(self, record: dict[str, Any]) -> None:
        """Durably store one journal record before its message is published.

        The default saves the whole ledger (correct, but a full write per
        emission); the shipped schedulers append to a small journal instead."""
        if self.ccs is not None:
            self.ccs_save_ledger(self.ccs.ledger)

    def ccs_journal_records(self) -> Iterable[Any]:
        """The journal records stored since the ledger was last saved."""
        return ()

    def ccs_entries_at_start(self) -> Mapping[str, Any]:
        """The entries checked at start, by name: an invalid one stops beat
        (default: ``self.schedule``)."""
        return self.schedule  # type: ignore[attr-defined,no-any-return]

    def ccs_entry_names(self) -> Iterable[str] | None:
        """Names of every entry, to drop the ledger of deleted ones (None: the
        entries checked at start)."""
        return None

    def ccs_entry(self, name: str) -> Any:
        """The current entry called ``name``, or None (used for buffered runs)."""
        return self.schedule.get(name)  # type: ignore[attr-defined]

    def ccs_runs_once(self, entry: Any) -> bool:
        """True for an entry that runs once (django-celery-beat's ``one_off``):
        a skipped run of it is remembered and sent as soon as nothing blocks
        it, whatever its overlap policy (default: no such entries)."""
        return False

    def ccs_on_decision(self, entry: Any, verdict: Verdict, task_id: str | None) -> None:
        """Called after each singleton decision (``task_id`` is None for a skip)."""

    def ccs_end_burst(self) -> None:
        """Called when a burst of due entries has been handled."""

    def ccs_reserved(self, entry: Any) -> None:
        """A buffered run reserved ``entry``: keep it where the scheduler reads
        its entries from (default: nothing to do -- ``reserve()`` did)."""

    def ccs_in_charge(self) -> bool:
        """False while another beat is in charge of the schedule (a standby
        waiting for a lock): such a beat must neither publish nor write the
        ledger, or it would overwrite what the beat in charge remembers.
        Asked before each publish and each ledger save (default: always)."""
        return True

    # -- setup ----------------------------------------------------------------

    def setup_schedule(self) -> None:
        super().setup_schedule()  # type: ignore[misc]
        ledger = self._ccs_read_ledger()
        ccs = Coordinator(self.app, sender=self, ledger=ledger,  # type: ignore[attr-defined]
                          names=self._ccs_task_names)
        entries = self.ccs_entries_at_start()
        policies = ccs.validate(entries)
        names = self.ccs_entry_names()
        ledger.forget(entries if names is None else names)
        self.ccs = ccs
        checked = sum(1 for p in policies.values() if p.checked)
        logger.info("ccs_beat: %d of %d entries are singletons (default: %s); "
                    "cluster read timeout %gs", checked, len(policies),
                    ccs.settings.default_policy.describe(), ccs.settings.inspect_timeout)

    def _ccs_read_ledger(self) -> Ledger:
        """The saved ledger with the journal written after it replayed."""
        ledger = self.ccs_load_ledger()
        try:
            replayed = ledger.replay(self.ccs_journal_records())
        except Exception as exc:  # noqa: BLE001 - an unreadable journal must not stop beat
            logger.error("ccs_beat: could not read the ledger's journal: %r", exc)
            replayed = 0
        if replayed:
            logger.info("ccs_beat: recovered %d emission record(s) from the journal "
                        "(the previous beat stopped before saving its ledger)", replayed)
        return ledger

    def _ccs_task_names(self) -> set[str]:
        return {entry.task for entry in self.schedule.values()}  # type: ignore[attr-defined]

    # -- the beat path ----------------------------------------------------------

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        ccs = self.ccs
        if ccs is None:
            return super().apply_entry(entry, producer=producer)  # type: ignore[misc]
        verdict = ccs.judge(entry)
        if verdict.emit:
            return super().apply_entry(entry, producer=producer)  # type: ignore[misc]
        ccs.skipped(entry, verdict, runs_once=self.ccs_runs_once(entry))
        self.ccs_on_decision(entry, verdict, None)
        return None

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        ccs = self.ccs
        if ccs is None:
            return super().apply_async(entry, producer=producer,  # type: ignore[misc]
                                       advance=advance, **kwargs)
        buffered = kwargs.pop("ccs_buffered", False)
        if not self.ccs_in_charge():
            logger.warning("ccs_beat: not sending %r: another beat is in charge of the "
                           "schedule", entry.name)
            return None
        entry = self.reserve(entry) if advance else entry  # type: ignore[attr-defined]
        sending, verdict, expires_at = ccs.prepare(entry)
        record = ccs.write_ahead(entry, sending, verdict, expires_at)
        try:
            if record is not None:
                self._ccs_journal(record)
            result = super().apply_async(sending, producer=producer,  # type: ignore[misc]
                                         advance=False, **kwargs)
        except Exception:
            # not published: do not wait for it (a withdrawn id is never sent)
            if record is not None:
                self._ccs_journal(ccs.withdraw(entry, sending.options["task_id"]))
            raise
        ccs.sent(entry, verdict, result, expires_at, buffered=buffered,
                 noted=record["emission"]["task_id"] if record is not None else None)
        if verdict.key is not None:
            self.ccs_on_decision(entry, verdict, getattr(result, "id", None))
        return result

    def tick(self, *args: Any, **kwargs: Any) -> float:
        ccs = self.ccs
        if ccs is not None and ccs.ledger.pending and ccs.poll_due():
            self._ccs_emit_buffered(ccs)
        delay = super().tick(*args, **kwargs)  # type: ignore[misc]
        if ccs is not None:
            if delay != 0:
                ccs.end_burst()
                if ccs.ledger.dirty:
                    self._ccs_persist(ccs)
                self._ccs_end_burst_hook()
            if ccs.ledger.pending:
                delay = min(delay, max(ccs.until_next_poll(), 0.01))
        return delay

    def _ccs_emit_buffered(self, ccs: Coordinator) -> None:
        """Emit each remembered ``buffer_one`` run whose blocker has ended.

        A buffered run is a run: it is reserved like a due one, so every
        scheduler counts it -- a ``one_off`` task is done after it, redbeat
        moves ``last_run_at`` -- and the tick's heap gets the reserved entry in
        place of the one it held, as ``tick()`` does after a due run. (Not a
        heap rebuilt from ``self.schedule``: django-celery-beat's reserve()
        does not put the new entry there, so a rebuild would make every entry
        due since the last load due again.)"""
        if not self.ccs_in_charge():
            return
        for name in sorted(ccs.ledger.pending):
            self._ccs_send_buffered(ccs, name)
        ccs.end_burst()

    def _ccs_send_buffered(self, ccs: Coordinator, name: str) -> None:
        """Send the remembered run of entry ``name`` if nothing blocks it any
        more; drop it if the entry is gone, switched off or no longer checked
        (a remembered run goes out at most once, and only for a singleton)."""
        try:
            entry = self.ccs_entry(name)
        except Exception as exc:  # noqa: BLE001 - a store hiccup: keep it, retry next poll
            logger.warning("ccs_beat: cannot read entry %r (%r); keeping its buffered run",
                           name, exc)
            return
        if entry is None or not _enabled(entry):
            logger.warning("ccs_beat: dropping the buffered run of %r: the entry is %s", name,
                           "gone" if entry is None else "switched off")
            ccs.ledger.set_pending(name, False)
            return
        verdict = ccs.judge(entry, buffered=True)
        if verdict.key is None:
            logger.warning("ccs_beat: dropping the buffered run of %r: it is no longer "
                           "a singleton", name)
            ccs.ledger.set_pending(name, False)
            ccs.discard(entry)
            return
        if not verdict.emit:
            ccs.discard(entry)
            return
        try:
            reserved = self.reserve(entry)  # type: ignore[attr-defined]
            self._ccs_requeue(reserved)
            self.apply_async(reserved, producer=self.producer,  # type: ignore[attr-defined]
                             advance=False, ccs_buffered=True)
        except Exception as exc:  # noqa: BLE001 - keep beat alive, keep the run buffered
            logger.error("ccs_beat: could not send the buffered run of %r: %r", name, exc)

    def _ccs_requeue(self, entry: Any) -> None:
        """Put ``entry`` (just reserved) in the tick's heap in place of the
        event that held its earlier self, at its new due time, and in the
        schedule a rebuilt heap is read from (:meth:`ccs_reserved`)."""
        self.ccs_reserved(entry)
        heap = getattr(self, "_heap", None)
        if not heap:
            return   # no heap (redbeat), or it is rebuilt at the next tick anyway
        for i, event in enumerate(heap):
            if event.entry.name == entry.name:
                _, next_in = self.is_due(entry)  # type: ignore[attr-defined]
                heap[i] = event._replace(time=self._when(entry, next_in),  # type: ignore[attr-defined]
                                         entry=entry)
        heapq.heapify(heap)

    def _ccs_end_burst_hook(self) -> None:
        try:
            self.ccs_end_burst()
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop beat
            logger.error("ccs_beat: error at the end of a burst: %r", exc)

    def _ccs_journal(self, record: dict[str, Any]) -> None:
        try:
            self.ccs_journal_append(record)
        except Exception as exc:  # noqa: BLE001 - send anyway: beat must not stop
            logger.error("ccs_beat: could not write the ledger's journal before sending "
                         "(%r); a beat killed before the end of this burst would forget "
                         "entry %r's emission", exc, record.get("entry"))

    def _ccs_persist(self, ccs: Coordinator) -> None:
        if not self.ccs_in_charge():
            logger.debug("ccs_beat: not saving the ledger: another beat is in charge")
            return
        try:
            self.ccs_save_ledger(ccs.ledger)
            ccs.ledger.dirty = False
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop beat
            logger.error("ccs_beat: could not save the ledger: %r", exc)

    def sync(self) -> None:
        ccs = self.ccs
        if ccs is not None and ccs.ledger.dirty and not self._ccs_closed:
            self._ccs_persist(ccs)
        super().sync()  # type: ignore[misc]

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            # close() made the last save; django-celery-beat syncs once more at
            # interpreter exit, when the database may be gone
            self._ccs_closed = True
            if self.ccs is not None:
                self.ccs.close()


def _enabled(entry: Any) -> bool:
    """False for an entry switched off (redbeat's ``enabled``, or the Django
    row's, which an expiry can switch off without a schedule reload)."""
    model = getattr(entry, "model", None)
    return getattr(entry, "enabled", True) is not False and \
        getattr(model, "enabled", True) is not False


def journal_path(schedule_filename: str) -> str:
    """The write-ahead journal next to a beat schedule file."""
    return schedule_filename + JOURNAL_SUFFIX


def read_journal(path: str) -> list[Any]:
    """The records of a journal file; a torn last line (beat killed while
    writing it) is skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError):
            continue
    return records


class SingletonScheduler(SingletonSchedulerMixin, PersistentScheduler):
    """``PersistentScheduler`` (the default beat scheduler) with singleton checks.

    The ledger is kept in the same shelve file as the schedule, under
    ``ccs_beat_ledger``, and saved at the end of every burst that changed it.
    Each emission is first appended to ``<schedule file>.ccs-journal`` (one
    JSON line, flushed before the publish), so a beat killed with ``kill -9``
    at any point still knows on restart what it may have sent.
    """

    def ccs_load_ledger(self) -> Ledger:
        return Ledger.from_state(self._store.get(LEDGER_KEY))

    def ccs_save_ledger(self, ledger: Ledger) -> None:
        self._store[LEDGER_KEY] = ledger.to_state()
        # Shelf.__setitem__ writes this one key through to the dbm; flushing the
        # dbm itself (dbm.dumb keeps its index in memory) makes it durable
        # without the full writeback sync of every schedule entry.
        flush = getattr(self._store.dict, "sync", None)
        if flush is not None:
            flush()
        # the saved state now includes every journal record (see Ledger.seq)
        with open(journal_path(self.schedule_filename), "w", encoding="utf-8"):
            pass

    def ccs_journal_append(self, record: dict[str, Any]) -> None:
        # one short append; it survives the process being killed (the page
        # cache is the kernel's), not a power cut
        with open(journal_path(self.schedule_filename), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def ccs_journal_records(self) -> list[Any]:
        return read_journal(journal_path(self.schedule_filename))

    @property
    def info(self) -> str:
        return super().info + "\n    . ccs_beat -> singleton checks on"
