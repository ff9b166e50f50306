"""Where a beat keeps its ledger: one contract, logic once.

Every scheduler keeps its ledger somewhere it already writes -- the schedule
file, Redis next to redbeat's keys, the Django tables -- and all three follow
the same write-ahead rule (see :mod:`ccs_beat.ledger`): a journal record is
stored before each publish, the whole ledger is saved at the end of a burst,
and that save empties the journal. So the rule lives here once, and a store
implements three raw operations (as dramatiq's result backends implement two):

* :meth:`LedgerStore.read_raw` -- the saved state and the journal records, as
  stored (data: :meth:`Ledger.from_state` and :meth:`Ledger.replay` validate);
* :meth:`LedgerStore.append` -- store one journal record, durably, now;
* :meth:`LedgerStore.write` -- store the state and empty the journal.

A scheduler names its store class in one place (``ccs_store`` on the
scheduler class): beat opens it with :meth:`LedgerStore.for_scheduler`, and
``celery ccs status`` opens the same class outside beat with
:meth:`LedgerStore.for_status`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from .errors import ConfigurationError
from .ledger import Ledger
from .logs import get_logger

logger = get_logger("ccs_beat")


class LedgerStore(ABC):
    """The contract every ledger store keeps. See the module docstring."""

    #: what ``celery ccs status`` and the logs call this store
    where = "memory"

    # -- the contract ---------------------------------------------------------

    def load(self) -> Ledger:
        """The saved ledger with the journal written after it replayed: what
        the previous beat may have sent, even if it was killed mid-burst."""
        state, records = self.read_raw()
        ledger = Ledger.from_state(state)
        replayed = ledger.replay(records)
        if replayed:
            logger.info("ccs_beat: recovered %d emission record(s) from %s (the previous "
                        "beat stopped before saving its ledger)", replayed, self.where)
        return ledger

    def save(self, ledger: Ledger) -> None:
        """Store ``ledger`` and empty the journal (the state includes every
        record: see :attr:`Ledger.seq`)."""
        self.write(ledger.to_state())

    # -- what a store implements ---------------------------------------------------

    @abstractmethod
    def read_raw(self) -> tuple[Any, Iterable[Any]]:
        """``(state, journal records)`` as stored; None for no state."""

    @abstractmethod
    def append(self, record: dict[str, Any]) -> None:
        """Store one journal record before its message is published."""

    @abstractmethod
    def write(self, state: dict[str, Any]) -> None:
        """Store ``state`` and empty the journal, atomically where the store can."""

    @classmethod
    @abstractmethod
    def for_scheduler(cls, scheduler: Any) -> LedgerStore:
        """This store of a running beat, ``scheduler``."""

    @classmethod
    @abstractmethod
    def for_status(cls, app: Any, schedule_path: str | None) -> LedgerStore:
        """This store of ``app``'s beat, opened from outside beat (read only
        where the store allows it; ``schedule_path`` is ``--schedule``), or
        :class:`ConfigurationError` saying why it cannot be."""

    def close(self) -> None:  # noqa: B027 - most stores open nothing to release
        """Release what :meth:`for_status` opened."""


class MemoryLedgerStore(LedgerStore):
    """The ledger in this process only: forgotten when beat stops. The
    default for a scheduler that names no store of its own."""

    def __init__(self) -> None:
        self._state: Any = None
        self._journal: list[dict[str, Any]] = []

    def read_raw(self) -> tuple[Any, Iterable[Any]]:
        return self._state, list(self._journal)

    def append(self, record: dict[str, Any]) -> None:
        self._journal.append(record)

    def write(self, state: dict[str, Any]) -> None:
        self._state, self._journal = state, []

    @classmethod
    def for_scheduler(cls, scheduler: Any) -> LedgerStore:
        return cls()

    @classmethod
    def for_status(cls, app: Any, schedule_path: str | None) -> LedgerStore:
        raise ConfigurationError("this beat keeps its ledger in its own memory: only "
                                 "its log tells what it sent")
