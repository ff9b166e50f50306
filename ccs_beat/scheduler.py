"""Beat schedulers that decline to emit while an identical task is queued or running.

:class:`SingletonSchedulerMixin` adds the check to any
:class:`celery.beat.Scheduler` that uses the stock ``tick()`` ->
``apply_entry()`` -> ``apply_async()`` path (the default ``PersistentScheduler``
and django-celery-beat's ``DatabaseScheduler``). Every decision goes through
:meth:`Coordinator.handle <ccs_beat.coordinator.Coordinator.handle>`; the mixin
only tells it how this scheduler publishes and reserves an entry. A subclass
says where its ledger lives by naming a :class:`~ccs_beat.ledger_store.
LedgerStore` class in ``ccs_store``.

:class:`SingletonScheduler` is the drop-in for ``celery beat``::

    celery -A proj beat -S ccs_beat.SingletonScheduler    # or: -S ccs
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from celery.beat import PersistentScheduler

from .coordinator import Coordinator, Publish
from .entries import is_prepared
from .events import DecisionEvent
from .ledger_store import LedgerStore, MemoryLedgerStore
from .logs import get_logger
from .stores.file import FileLedgerStore

logger = get_logger("ccs_beat")

if TYPE_CHECKING:
    # what the mixin is put in front of: it relies on Scheduler's attributes
    from celery.beat import Scheduler as _SchedulerBase
else:
    _SchedulerBase = object


class SingletonSchedulerMixin(_SchedulerBase):
    """Singleton decisions for a Celery beat scheduler. Put it first in the bases."""

    #: where this scheduler keeps its ledger (``celery ccs status`` reads it too)
    ccs_store: ClassVar[type[LedgerStore]] = MemoryLedgerStore
    #: created by :meth:`setup_schedule`; None on lazy (introspection) instances
    ccs_coordinator: Coordinator | None = None
    _ccs_closed = False

    # -- hooks (override per scheduler) -----------------------------------------

    def ccs_entries_at_start(self) -> Mapping[str, Any]:
        """The entries checked at start, by name: an invalid one stops beat
        (default: ``self.schedule``)."""
        return self.schedule

    def ccs_entry_names(self) -> Iterable[str] | None:
        """Names of every entry, to drop the ledger of deleted ones (None: the
        entries checked at start)."""
        return None

    def ccs_entry(self, name: str) -> Any:
        """The current entry called ``name``, or None (used for buffered runs)."""
        return self.schedule.get(name)

    def ccs_runs_once(self, entry: Any) -> bool:
        """True for an entry that runs once (django-celery-beat's ``one_off``):
        a skipped run of it is remembered and sent as soon as nothing blocks
        it, whatever its overlap policy (default: no such entries)."""
        return False

    def ccs_on_decision(self, entry: Any, event: DecisionEvent) -> None:
        """Called after each decision about a singleton entry."""

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

    def ccs_task_names(self) -> Iterable[str] | None:
        """The task names a cluster read asks about (None: every task)."""
        return {entry.task for entry in self.schedule.values()}

    # -- setup ----------------------------------------------------------------

    def setup_schedule(self) -> None:
        super().setup_schedule()
        coordinator = Coordinator(self.app, sender=self,
                                  store=self.ccs_store.for_scheduler(self),
                                  names=self.ccs_task_names, in_charge=self.ccs_in_charge,
                                  on_decision=self.ccs_on_decision)
        entries = self.ccs_entries_at_start()
        policies = coordinator.validate(entries)
        names = self.ccs_entry_names()
        coordinator.load_ledger(entries if names is None else names)
        self.ccs_coordinator = coordinator
        checked = sum(1 for p in policies.values() if p.checked)
        logger.info("ccs_beat: %d of %d entries are singletons (default: %s); "
                    "cluster read timeout %gs; ledger in %s", checked, len(policies),
                    coordinator.settings.default_policy.describe(),
                    coordinator.settings.inspect_timeout, coordinator.store.where)

    # -- the beat path ----------------------------------------------------------

    def ccs_publisher(self, producer: Any = None) -> Publish:
        """Publish a prepared entry with ``self.apply_async``, as stock beat
        does -- a subclass's override of it sees every emission -- which hands
        a prepared entry to the stock one (lazy arguments, beat's header, the
        sync count)."""
        def publish(sending: Any) -> Any:
            return self.apply_async(sending, producer=producer, advance=False)
        return publish

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        if self.ccs_coordinator is None:
            return super().apply_entry(entry, producer=producer)
        self.ccs_handle(entry, self.ccs_publisher(producer))
        return None

    def ccs_handle(self, entry: Any, publish: Publish) -> DecisionEvent | None:
        """Decide a due entry and carry it out (``Coordinator.handle``); a
        failed publish is logged, as stock beat logs it, and beat goes on.
        The decision's event, or None (nothing decided or sent)."""
        assert self.ccs_coordinator is not None
        try:
            return self.ccs_coordinator.handle(entry, publish,
                                               runs_once=self.ccs_runs_once(entry))
        except Exception as exc:
            logger.error("ccs_beat: could not send %r (%s): %r", entry.name, entry.task, exc,
                         exc_info=True)
            return None

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        """Send ``entry`` now, without a decision (a direct call): recorded in
        the ledger if it is a singleton, so beat does not send it again while
        it is queued or running."""
        coordinator = self.ccs_coordinator
        if coordinator is None or is_prepared(entry):   # decided: send it as it is
            return super().apply_async(entry, producer=producer,
                                       advance=advance, **kwargs)
        send = super().apply_async

        def publish(sending: Any) -> Any:
            return send(sending, producer=producer, advance=False, **kwargs)
        if advance and coordinator.in_charge():
            entry = self.reserve(entry)
        return coordinator.send(entry, coordinator.unjudged(entry), publish)[0]

    def tick(self, *args: Any, **kwargs: Any) -> float:
        coordinator = self.ccs_coordinator
        if coordinator is not None and coordinator.begin_buffer_poll():
            coordinator.send_buffered(self.ccs_entry, self._ccs_reserve_buffered,
                                      self.ccs_publisher(self.producer))
        delay: float = super().tick(*args, **kwargs)
        if coordinator is not None:
            if delay != 0:
                self._ccs_end_burst(coordinator)
            if coordinator.ledger.pending:
                delay = min(delay, max(coordinator.until_next_poll(), 0.01))
        return delay

    def _ccs_end_burst(self, coordinator: Coordinator) -> None:
        coordinator.end_burst()
        coordinator.save_ledger()
        try:
            self.ccs_end_burst()
        except Exception as exc:
            logger.error("ccs_beat: error at the end of a burst: %r", exc, exc_info=True)

    def _ccs_reserve_buffered(self, entry: Any) -> Any:
        """A buffered run is a run: it is reserved like a due one, so every
        scheduler counts it -- a ``one_off`` task is done after it, redbeat
        moves ``last_run_at`` -- and the tick's heap gets the reserved entry in
        place of the one it held, as ``tick()`` does after a due run. (Not a
        heap rebuilt from ``self.schedule``: django-celery-beat's reserve()
        does not put the new entry there, so a rebuild would make every entry
        due since the last load due again.)"""
        reserved = self.reserve(entry)
        self.ccs_reserved(reserved)
        heap = getattr(self, "_heap", None)
        if heap:   # no heap (redbeat), or it is rebuilt at the next tick anyway
            for i, event in enumerate(heap):
                if event.entry.name == reserved.name:
                    _, next_in = self.is_due(reserved)
                    heap[i] = event._replace(time=self._when(reserved, next_in),
                                             entry=reserved)
            heapq.heapify(heap)
        return reserved

    def sync(self) -> None:
        coordinator = self.ccs_coordinator
        if coordinator is not None and not self._ccs_closed:
            coordinator.save_ledger()
        super().sync()

    def close(self) -> None:
        try:
            super().close()
        finally:
            # close() made the last save; django-celery-beat syncs once more at
            # interpreter exit, when the database may be gone
            self._ccs_closed = True
            if self.ccs_coordinator is not None:
                self.ccs_coordinator.close()


class SingletonScheduler(SingletonSchedulerMixin, PersistentScheduler):
    """``PersistentScheduler`` (the default beat scheduler) with singleton checks.

    The ledger is kept in the same shelve file as the schedule, under
    ``ccs_beat_ledger``, and saved at the end of every burst that changed it.
    Each emission is first appended to ``<schedule file>.ccs-journal`` (one
    JSON line, flushed before the publish), so a beat killed with ``kill -9``
    at any point still knows on restart what it may have sent.
    """

    ccs_store = FileLedgerStore

    @property
    def info(self) -> str:
        return super().info + "\n    . ccs_beat -> singleton checks on"
