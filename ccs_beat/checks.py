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

from .cluster import check_broadcast_support
from .coordinator import Coordinator
from .errors import ConfigurationError
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


def scheduler_class(app: Any, name: str | None) -> tuple[type | None, str | None]:
    """``(class, None)`` for the beat scheduler ``name`` (as given to ``beat -S``;
    default the ``beat_scheduler`` setting), or ``(None, why)`` if it cannot be
    imported. The name comes from the command line or the Python
    configuration, never from data."""
    name = str(name or app.conf.beat_scheduler or "")
    aliases = dict(load_extension_class_names("celery.beat_schedulers") or ())
    try:
        found = symbol_by_name(name, aliases=aliases)
    except Exception as exc:  # noqa: BLE001 - ImportError, or Django not set up
        return None, f"cannot import the beat scheduler {name!r}: {exc!r}"
    if not isinstance(found, type):
        return None, f"the beat scheduler {name!r} is not a class"
    return found, None


def _stored_entries(cls: type | None) -> Callable[[Any], CheckReport] | None:
    """The checker of the entries scheduler ``cls`` stores (None: it stores
    none of its own): its ``ccs_check_entries``, read off the class."""
    checker = getattr(cls, "ccs_check_entries", None)
    return checker if callable(checker) else None


def check_app(app: Any, scheduler: str | None = None) -> CheckReport:
    """Validate the settings, ``beat_schedule`` and the scheduler's stored entries."""
    report = CheckReport()
    try:
        coordinator = Coordinator(app, sender=None)
    except ConfigurationError as exc:
        report.problems.append(str(exc))
        return report
    try:
        report.policies.update(coordinator.validate(
            {name: _Entry(name, spec) for name, spec in (app.conf.beat_schedule or {}).items()},
            check_transport=False))
    except ConfigurationError as exc:
        report.problems.append(str(exc))
    cls, error = scheduler_class(app, scheduler)
    if error is not None:
        report.problems.append(error)
    checker = _stored_entries(cls)
    if checker is not None:
        try:
            stored = checker(coordinator)
        except Exception as exc:  # noqa: BLE001 - the store is away: a finding, no traceback
            report.problems.append(f"cannot read the scheduler's stored entries: {exc!r}")
        else:
            report.policies.update(stored.policies)
            report.problems.extend(stored.problems)
    _check_transport(app, coordinator, report)
    coordinator.close()
    return report


def _check_transport(app: Any, coordinator: Coordinator, report: CheckReport) -> None:
    """Once for every entry checked: the broker must broadcast."""
    if coordinator.settings.default_policy.checked or \
            any(p.checked for p in report.policies.values()):
        try:
            check_broadcast_support(app)
        except ConfigurationError as exc:
            report.problems.append(str(exc))
