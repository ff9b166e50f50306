"""The ledger in the database, for django-celery-beat's scheduler.

The state is the ``SingletonLedger`` row named ``default``; the journal is the
``SingletonJournal`` rows of that ledger, in ``seq`` order. A save updates the
one and deletes the others in one transaction, and a load reads both in one.
A script can write anything in these tables: a value the JSON decoder cannot
read is left out with an ERROR, and the rest is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, close_old_connections, transaction

from ...ledger_store import LedgerStore
from ...logs import get_logger
from .models import SingletonJournal, SingletonLedger

logger = get_logger("ccs_beat")

#: primary key of this beat's row in SingletonLedger
LEDGER_NAME = "default"

#: what decoding a row's JSON field can raise: bad JSON, and JSON nested
#: deeper than the parser's recursion limit (a row is data a script can write)
JSON_ERRORS = (ValueError, TypeError, RecursionError)


def decoded(rows: Any, field: str, where: str) -> list[Any]:
    """``field`` of each of ``rows``, decoded; a value that cannot be decoded
    is left out with an ERROR (read at once, or one by one when one fails)."""
    unreadable = (*JSON_ERRORS, DatabaseError)   # SQLite: text that is not UTF-8
    try:
        return list(rows.values_list(field, flat=True))
    except unreadable:
        pass
    values = []
    for pk in rows.values_list("pk", flat=True):   # the database itself is away: raises
        try:
            values.extend(rows.model.objects.filter(pk=pk).values_list(field, flat=True))
        except unreadable as exc:
            logger.error("ccs_beat: %s, row %r: %s is not usable JSON (%s); ignoring it",
                         where, pk, field, type(exc).__name__)
    return values


class DatabaseLedgerStore(LedgerStore):
    """State and journal in ccs_beat's two tables."""

    where = "database table ccs_beat_singletonledger"

    def __init__(self, name: str = LEDGER_NAME) -> None:
        self.name = name

    def read_raw(self) -> tuple[Any, Iterable[Any]]:
        with transaction.atomic():
            states = decoded(SingletonLedger.objects.filter(name=self.name), "state",
                             "table ccs_beat_singletonledger")
            journal = decoded(SingletonJournal.objects.filter(ledger=self.name)
                              .order_by("seq"), "record", "table ccs_beat_singletonjournal")
        return (states[0] if states else None), journal

    def append(self, record: dict[str, Any]) -> None:
        close_old_connections()
        SingletonJournal.objects.create(ledger=self.name, seq=record["seq"], record=record)

    def write(self, state: dict[str, Any]) -> None:
        close_old_connections()
        with transaction.atomic():
            SingletonLedger.objects.update_or_create(name=self.name,
                                                     defaults={"state": state})
            SingletonJournal.objects.filter(ledger=self.name).delete()

    @classmethod
    def for_scheduler(cls, scheduler: Any) -> LedgerStore:
        return cls()

    @classmethod
    def for_status(cls, app: Any, schedule_path: str | None) -> LedgerStore:
        return cls()
