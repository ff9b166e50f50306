"""What ``celery ccs status`` shows: singleton tasks in the cluster right now,
the local beat's ledger, and the workers that did not answer.

The report is built from plain data (a :class:`~ccs_beat.cluster.Snapshot`, a
:class:`~ccs_beat.ledger.Ledger`, the beat schedule's policies), so it is
tested without a cluster; the CLI command only gathers those and prints.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigurationError, UnkeyableError
from .identity import task_key
from .ledger import Ledger
from .ledger_store import LedgerStore
from .logs import printable
from .policy import Policy
from .snapshot import SeenTask, Snapshot
from .stores.file import FileLedgerStore


@dataclass
class Row:
    """One singleton task seen on a worker."""

    task: str
    key: str
    worker: str
    state: str
    age: float | None
    id: str
    source: str          # stamp | entry NAME | task


@dataclass
class LedgerRow:
    entry: str
    task_id: str
    key: str
    sent_ago: float
    expires_in: float | None
    seen_on: str | None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    ledger_source: str | None = None
    ledger_error: str | None = None
    ledger: list[LedgerRow] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    garbled: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    failure: str | None = None
    elapsed_ms: float = 0.0
    timeout: float = 0.0

    @property
    def outcome(self) -> str:
        """``failed`` (the broker could not be used), ``no_worker`` (nobody
        answered: nothing can be said of what runs), ``partial`` (some worker
        was silent or unusable: the list may miss tasks) or ``complete``."""
        if self.failure:
            return "failed"
        if not self.answered:
            return "no_worker"
        return "partial" if self.silent or self.garbled or self.dropped else "complete"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


#: ``celery ccs status`` exit status per outcome (docs/cli.md); 2 is click's
#: usage error (a bad option, such as ``--timeout -1``)
EXIT_CODES = {"complete": 0, "no_worker": 3, "failed": 4, "partial": 5}


def _age(task: SeenTask, now: float) -> float | None:
    if task.age is not None:
        return task.age
    sent_at = (task.stamp or {}).get("sent_at")
    if not isinstance(sent_at, (int, float)) or isinstance(sent_at, bool):
        return None
    try:
        age = now - float(sent_at)
    except OverflowError:
        return None
    return max(0.0, age) if math.isfinite(age) else None


def singleton_rows(snapshot: Snapshot, policies: Mapping[str, tuple[str, Policy]],
                   task_policies: Mapping[str, Policy], now: float) -> list[Row]:
    """Every task in ``snapshot`` that is a singleton, with its key.

    A task is a singleton if its message carries ccs_beat's stamp (beat or a
    SingletonTask sender put the key there), if its name is the task of a
    singleton beat entry (``policies``: task name -> (entry, policy)), or if
    the task is declared singleton (``task_policies``: task name -> policy).
    """
    rows = []
    for task in snapshot.tasks:
        stamp = task.stamp or {}
        key, source = stamp.get("key"), "stamp"
        if not isinstance(key, str):
            key = None
            named = policies.get(task.name)
            policy = named[1] if named else task_policies.get(task.name)
            source = f"entry {named[0]}" if named else "task"
            if policy is None or not policy.checked:
                continue
            try:
                key = task_key(task.name, task.args, task.kwargs, policy.key)
            except UnkeyableError:
                continue
        rows.append(Row(task=task.name, key=key, worker=task.worker, state=task.state,
                        age=_age(task, now), id=task.id, source=source))
    order = {"active": 0, "reserved": 1, "scheduled": 2}
    return sorted(rows, key=lambda r: (r.key, order.get(r.state, 9), r.worker, r.id))


def ledger_rows(ledger: Ledger, now: float) -> list[LedgerRow]:
    rows = []
    for entry, emissions in sorted(ledger.entries.items()):
        for e in emissions:
            rows.append(LedgerRow(entry=entry, task_id=e.task_id, key=e.key,
                                  sent_ago=max(0.0, now - e.sent_at),
                                  expires_in=(None if e.expires_at is None
                                              else e.expires_at - now),
                                  seen_on=e.seen_on))
    return rows


def build_report(snapshot: Snapshot, policies: Mapping[str, tuple[str, Policy]],
                 task_policies: Mapping[str, Policy], ledger: Ledger | None,
                 ledger_source: str | None, ledger_error: str | None,
                 now: float | None = None) -> Report:
    now = time.time() if now is None else now
    peers: set[str] = set()
    for view in snapshot.workers.values():
        peers |= set(view.peers or ())
    answered = sorted(snapshot.workers)
    silent = sorted((set(snapshot.missing) | peers) - set(answered) - set(snapshot.garbled))
    return Report(
        rows=singleton_rows(snapshot, policies, task_policies, now),
        ledger_source=ledger_source, ledger_error=ledger_error,
        ledger=ledger_rows(ledger, now) if ledger is not None else [],
        answered=answered, silent=silent, garbled=dict(snapshot.garbled),
        dropped=[item.describe() for item in snapshot.dropped],
        failure=snapshot.failure, elapsed_ms=snapshot.elapsed * 1000,
        timeout=snapshot.timeout)


def _fmt_age(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _fmt_expiry(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:.1f}s" if value >= 0 else f"expired {-value:.1f}s ago"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip()]
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return out


def _singleton_table(report: Report) -> list[str]:
    lines = [f"Singleton tasks in the cluster ({len(report.rows)})"
             + (", from the workers that answered:" if report.outcome == "partial" else ":")]
    if report.rows:
        lines += ["  " + t for t in _table(
            ["TASK", "KEY", "WORKER", "STATE", "AGE", "ID"],
            [[r.task, r.key, r.worker, r.state, _fmt_age(r.age), r.id] for r in report.rows])]
    else:
        lines.append("  none running, reserved or scheduled")
    return lines


def render(report: Report) -> str:
    """The human-readable form of ``report``."""
    lines = []
    if report.outcome == "failed":
        lines.append(f"Could not read the cluster: {report.failure}")
    elif report.outcome == "no_worker":
        lines.append(f"No worker answered within {report.timeout:g}s: what is running, "
                     "reserved or scheduled cannot be told (are the workers up, on this "
                     "broker, and do they import ccs_beat or answer inspect commands?)")
    else:
        lines += _singleton_table(report)
    lines.append("")
    if report.ledger_source is None:
        lines.append("Beat ledger: " + (report.ledger_error or "not found"))
    else:
        lines.append(f"Beat ledger ({report.ledger_source}): {len(report.ledger)} emission(s)"
                     " that may still be queued or running")
        if report.ledger:
            lines += ["  " + t for t in _table(
                ["ENTRY", "TASK ID", "SENT", "EXPIRES IN", "SEEN ON"],
                [[r.entry, r.task_id, f"{r.sent_ago:.1f}s ago",
                  _fmt_expiry(r.expires_in),
                  r.seen_on or "-"] for r in report.ledger])]
    lines.append("")
    lines.append(f"Workers: {len(report.answered)} answered in {report.elapsed_ms:.0f} ms"
                 + (f" ({', '.join(report.answered)})" if report.answered else ""))
    if report.silent:
        lines.append("  no reply from: " + ", ".join(report.silent))
    for worker, why in sorted(report.garbled.items()):
        lines.append(f"  unusable reply from {worker}: {why}")
    lines.extend(f"  {text}" for text in report.dropped)
    # ids, names and reasons come from replies and stored text: one line each
    return "\n".join(printable(line) for line in lines)


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True)


# -- where the local beat keeps its ledger ------------------------------------------


def read_ledger(app: Any, schedule_path: str | None, scheduler: str | None = None,
                ) -> tuple[Ledger | None, str | None, str | None]:
    """``(ledger, source, error)`` for the local beat, from the store its
    scheduler class names (``scheduler``, else the ``beat_scheduler``
    setting). A schedule file is a pickle: it is opened for a ccs_beat
    scheduler, or when the operator names it, never because it lies here."""
    from .checks import scheduler_class

    cls, error = scheduler_class(app, scheduler)
    if error is not None:
        return None, None, error
    store_class = getattr(cls, "ccs_store", None)
    if not (isinstance(store_class, type) and issubclass(store_class, LedgerStore)):
        if schedule_path is None:
            return None, None, (f"the beat scheduler {getattr(cls, '__name__', cls)} is not "
                                "a ccs_beat scheduler (use --scheduler, or --schedule FILE)")
        store_class = FileLedgerStore
    try:
        store = store_class.for_status(app, schedule_path)
    except ConfigurationError as exc:
        return None, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - the status of the cluster still shows
        return None, None, f"not reachable: {exc!r}"
    try:
        return store.load(), store.where, None
    except Exception as exc:  # noqa: BLE001 - the status of the cluster still shows
        return None, None, f"not reachable: {exc!r}"
    finally:
        store.close()
