"""The ledger in beat's schedule file, for :class:`ccs_beat.SingletonScheduler`.

The state lives in the same shelve file as the schedule, under
``ccs_beat_ledger``; the journal is a file of JSON lines next to it,
``<schedule file>.ccs-journal``. One short append per emission survives the
process being killed (the page cache is the kernel's), not a power cut.
"""

from __future__ import annotations

import json
import shelve
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..ledger_store import LedgerStore
from ..logs import get_logger

logger = get_logger("ccs_beat")

#: shelve key of the ledger in the PersistentScheduler's store
LEDGER_KEY = "ccs_beat_ledger"
#: suffix of the write-ahead journal's file after the schedule file's name
JOURNAL_SUFFIX = ".ccs-journal"
#: the file ``celery beat`` uses when given no ``--schedule``
DEFAULT_SCHEDULE = "celerybeat-schedule"


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


class FileLedgerStore(LedgerStore):
    """State in the schedule's shelve, journal in a file beside it."""

    def __init__(self, shelf: Callable[[], MutableMapping[str, Any]],
                 schedule_filename: str) -> None:
        # a getter: PersistentScheduler reopens its shelve when it is corrupt
        self._shelf = shelf
        self._journal = journal_path(schedule_filename)
        self._opened: Any = None
        self.where = f"schedule file {schedule_filename}"

    def read_raw(self) -> tuple[Any, Iterable[Any]]:
        state = self._shelf().get(LEDGER_KEY)
        try:
            records = read_journal(self._journal)
        except (OSError, UnicodeDecodeError) as exc:
            # an unreadable journal must not stop beat: it loses only its records
            logger.error("ccs_beat: could not read the ledger's journal %s: %r",
                         self._journal, exc, exc_info=True)
            records = []
        return state, records

    def append(self, record: dict[str, Any]) -> None:
        with open(self._journal, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def write(self, state: dict[str, Any]) -> None:
        shelf = self._shelf()
        shelf[LEDGER_KEY] = state
        # Shelf.__setitem__ writes this one key through to the dbm; flushing the
        # dbm itself (dbm.dumb keeps its index in memory) makes it durable
        # without the full writeback sync of every schedule entry
        flush = getattr(getattr(shelf, "dict", None), "sync", None)
        if flush is not None:
            flush()
        with open(self._journal, "w", encoding="utf-8"):
            pass

    @classmethod
    def for_scheduler(cls, scheduler: Any) -> LedgerStore:
        """The store of a ``PersistentScheduler``: its shelve (read when
        needed: it reopens the file when the file is corrupt) and file name."""
        return cls(lambda: scheduler._store, scheduler.schedule_filename)

    @classmethod
    def for_status(cls, app: Any, schedule_path: str | None) -> LedgerStore:
        path = schedule_path or DEFAULT_SCHEDULE
        if not any(Path(p).exists() for p in (path, path + ".db", path + ".dat")):
            raise ConfigurationError(f"no beat schedule file at {path} (use --schedule)")
        opened = shelve.open(path, flag="r")  # noqa: SIM115 - closed by close()
        store = cls(lambda: opened, path)
        store._opened = opened
        return store

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()
            self._opened = None
