"""What ``celery ccs check`` validates, without starting beat.

Beat reads its entries from more than ``beat_schedule``: django-celery-beat's
rows and celery-redbeat's Redis entries are written at run time, by people and
scripts, and a bad one is only found when beat loads it. So the check covers
the ``ccs_beat_*`` settings, every ``beat_schedule`` entry, and the entries the
configured scheduler stores, with the same validation beat applies, and
reports every problem at once (an operator fixes them in one pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.utils.imports import load_extension_class_names
from kombu.utils.imports import symbol_by_name

from .coordinator import Coordinator
from .errors import ConfigurationError
from .ledger import Ledger
from .policy import Policy


@dataclass
class CheckReport:
    """Each valid entry's policy, and one line per problem found."""

    policies: dict[str, Policy] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _Entry:
    """The few attributes of a beat_schedule dict that validation reads."""

    def __init__(self, name: str, spec: Any) -> None:
        spec = spec if isinstance(spec, dict) else {}
        self.name = name
        self.task = spec.get("task")
        self.args = spec.get("args") or ()
        self.kwargs = spec.get("kwargs") or {}
        self.options = spec.get("options") or {}


def scheduler_class(app: Any, name: str | None) -> type | None:
    """The beat scheduler class ``name`` (as given to ``beat -S``; default the
    ``beat_scheduler`` setting), or None if it cannot be imported. The name
    comes from the command line or the Python configuration, never from data."""
    name = str(name or app.conf.beat_scheduler or "")
    aliases = dict(load_extension_class_names("celery.beat_schedulers") or ())
    try:
        found = symbol_by_name(name, aliases=aliases)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def _stored_entries(app: Any, cls: type | None) -> Callable[[Any], CheckReport] | None:
    """The checker of the entries ``cls`` stores (None: it stores none)."""
    try:
        from .contrib.django.schedulers import SingletonDatabaseScheduler, check_rows
    except ImportError:   # Django or django-celery-beat is not installed or set up
        SingletonDatabaseScheduler = check_rows = None  # type: ignore[assignment,misc]
    if SingletonDatabaseScheduler is not None and cls is not None and \
            issubclass(cls, SingletonDatabaseScheduler):
        return check_rows
    try:
        from .contrib.redbeat import SingletonRedBeatScheduler, check_entries
    except ImportError:
        return None
    if cls is not None and issubclass(cls, SingletonRedBeatScheduler):
        return check_entries
    return None


def check_app(app: Any, scheduler: str | None = None) -> CheckReport:
    """Validate the settings, ``beat_schedule`` and the scheduler's stored entries."""
    report = CheckReport()
    try:
        coordinator = Coordinator(app, sender=None, ledger=Ledger())
    except ConfigurationError as exc:
        report.problems.append(str(exc))
        return report
    try:
        report.policies.update(coordinator.validate(
            {name: _Entry(name, spec) for name, spec in (app.conf.beat_schedule or {}).items()}))
    except ConfigurationError as exc:
        report.problems.append(str(exc))
    checker = _stored_entries(app, scheduler_class(app, scheduler))
    if checker is not None:
        stored = checker(coordinator)
        report.policies.update(stored.policies)
        report.problems.extend(stored.problems)
    coordinator.close()
    return report
