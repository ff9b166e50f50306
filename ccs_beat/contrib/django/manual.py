""""Run selected tasks" from the admin, with the singleton check.

django-celery-beat's admin action sends each selected periodic task at once.
For a singleton task that would start the very overlap the setting forbids, so
this version reads the cluster once (the same read beat makes) and sends only
the tasks that have no identical task queued on a worker or running; the
others are reported back with what blocks them. Tasks that are not singletons
are sent as before.

It takes beat's own path (:meth:`ccs_beat.coordinator.Coordinator.handle`):
the same policy, key, cluster read, decision, stamp, expiry, log line and
signals. Its ledger is this action's: two selected tasks that are identical
go out once, the second held back by the first's emission.

Limit: a message still waiting in the broker queue is invisible to a cluster
read, and beat's ledger lives in beat; so a task emitted by beat a moment ago
and not yet picked up by a worker can be sent again from here. Put
``SingletonTask`` on the task (the worker guard) to close that gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery.beat import ScheduleEntry

from ...cluster import ClusterReader
from ...coordinator import Coordinator
from ...entries import OPTION, entry_arguments
from ...errors import ConfigurationError
from ...events import BeatAction
from ...policies import task_default
from ...policy import load_settings
from .schedulers import row_arguments, row_headers, row_option


@dataclass
class ManualRun:
    """What happened to one selected periodic task."""

    name: str
    task_id: str | None = None      # sent as this id
    skipped: str | None = None      # not sent, because
    error: str | None = None        # not sent, because of bad data


def run_now(app: Any, periodic_tasks: Iterable[Any],
            reader: ClusterReader | None = None) -> list[ManualRun]:
    """Send each periodic task now unless its singleton setting forbids it."""
    settings = load_settings(app.conf)
    runs: list[ManualRun] = []
    entries = []
    for model in periodic_tasks:
        try:
            entries.append(_entry(app, model, settings))
        except (ConfigurationError, ValueError, TypeError) as exc:
            runs.append(ManualRun(model.name, error=str(exc)))
    if not entries:
        return runs
    coordinator = Coordinator(app, sender=None, settings=settings, reader=reader,
                              names=lambda: {entry.task for entry in entries})
    sent: list[ScheduleEntry] = []   # what this action sent (the read cannot see it)
    try:
        for entry in entries:
            runs.append(_run(coordinator, entry, sent))
    finally:
        if reader is None:
            coordinator.close()
    return runs


def _entry(app: Any, model: Any, settings: Any) -> ScheduleEntry:
    """The row as a beat entry: its task, arguments, queue and headers (what
    django-celery-beat's own action sends) and its singleton option; no
    schedule (a run by hand is outside it). Raises naming the row if any is
    bad."""
    args, kwargs = row_arguments(model)
    headers = row_headers(model)
    headers["periodic_task_name"] = model.name
    option = row_option(model, settings, task_default(app, model.task, settings))
    options: dict[str, Any] = {"headers": headers}
    if model.queue:
        options["queue"] = model.queue
    if option is not None:
        options[OPTION] = option
    return ScheduleEntry(name=model.name, task=model.task, schedule=None, args=args,
                         kwargs=kwargs, options=options, app=app)


def _run(coordinator: Coordinator, entry: ScheduleEntry,
         sent: list[ScheduleEntry]) -> ManualRun:
    app = coordinator.app
    twin = _just_sent(coordinator, entry, sent)
    if twin is not None:
        return ManualRun(entry.name, skipped="an identical task was just sent by this "
                         f"action (id {twin})")

    def publish(sending: Any) -> Any:
        args, kwargs, _ = entry_arguments(sending)
        task = app.tasks.get(sending.task)
        if task is not None:
            result = task.apply_async(args=args, kwargs=kwargs, **sending.options)
        else:
            result = app.send_task(sending.task, args=args, kwargs=kwargs, **sending.options)
        sending.options["task_id"] = result.id
        sent.append(sending)
        return result

    event = coordinator.handle(entry, publish, on_schedule=False)
    if event is None:
        return ManualRun(entry.name, error="not sent")
    if event.action is BeatAction.SKIP:
        detail = event.detail
        if event.blocker is not None:
            from ...decide import describe_blocker
            detail += f" ({describe_blocker(event.blocker)})"
        return ManualRun(entry.name, skipped=detail)
    return ManualRun(entry.name, task_id=event.task_id)


def _just_sent(coordinator: Coordinator, entry: ScheduleEntry,
               sent: list[ScheduleEntry]) -> str | None:
    """The id of a task this action sent that is identical under this row's
    policy (keyed with this row's spec: rows of one task can have different
    ones, and the ledger knows each emission by its own row's key)."""
    try:
        policy = coordinator.policies.of(entry)
        if not policy.checked:
            return None
        key = coordinator.policies.key_for(entry, policy)
    except ConfigurationError:
        return None   # judged, and named, by the coordinator
    for other in sent:
        try:
            if coordinator.policies.key_for(other, policy) == key:
                return str(other.options["task_id"])
        except ConfigurationError:
            continue
    return None
