""""Run selected tasks" from the admin, with the singleton check.

django-celery-beat's admin action sends each selected periodic task at once.
For a singleton task that would start the very overlap the setting forbids, so
this version reads the cluster once (the same read beat makes) and sends only
the tasks that have no identical task queued on a worker or running; the
others are reported back with what blocks them. Tasks that are not singletons
are sent as before.

Limit: a message still waiting in the broker queue is invisible to a cluster
read, and beat's ledger lives in beat; so a task emitted by beat a moment ago
and not yet picked up by a worker can be sent again from here. Put
``SingletonTask`` on the task (the worker guard) to close that gap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...cluster import ClusterReader, Snapshot
from ...control import STAMP_HEADER, make_stamp
from ...decide import decide
from ...errors import ConfigurationError, UnkeyableError
from ...identity import task_key
from ...policy import Policy, load_settings, parse_policy
from ...task import task_default
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
    plans: list[tuple[Any, Policy | None, str | None, list, dict, dict]] = []
    runs: list[ManualRun] = []
    for model in periodic_tasks:
        try:
            args, kwargs = row_arguments(model)
            headers = row_headers(model)
            default = task_default(app, model.task, settings)
            option = row_option(model, settings, default)
            policy = parse_policy(option, default=default,
                                  where=f"periodic task {model.name!r}",
                                  functions=settings.key_functions)
            key = task_key(model.task, args, kwargs, policy.key) if policy.checked else None
        except (ConfigurationError, UnkeyableError, ValueError, TypeError) as exc:
            runs.append(ManualRun(model.name, error=str(exc)))
            continue
        plans.append((model, policy if policy.checked else None, key, args, kwargs, headers))

    snapshot: Snapshot | None = None
    if any(policy is not None for _, policy, *_ in plans):
        own = reader is None
        reader = reader or ClusterReader(app, timeout=settings.inspect_timeout,
                                         worker_expiry=settings.worker_expiry)
        try:
            snapshot = reader.read({model.task for model, *_ in plans})
        finally:
            if own:
                reader.close()

    sent: list[tuple[str, list, dict, str]] = []   # what this action sent (the read cannot see it)
    for model, policy, key, args, kwargs, headers in plans:
        headers["periodic_task_name"] = model.name
        headers.pop(STAMP_HEADER, None)   # only this check stamps a message
        twin = _just_sent(sent, policy, key)
        if twin is not None:
            runs.append(ManualRun(model.name, skipped="an identical task was just sent by "
                                  f"this action (id {twin})"))
            continue
        if policy is not None and snapshot is not None and key is not None:
            matches = [] if snapshot.failure else snapshot.matching(policy.key, key, model.task)
            now = time.time()
            decision = decide(policy, matches=matches, outstanding=[],
                              incomplete=snapshot.incomplete_reason(model.task), now=now)
            if not decision.emit:
                runs.append(ManualRun(model.name, skipped=decision.describe()))
                continue
            headers[STAMP_HEADER] = make_stamp(key, entry=model.name, sent_at=now)
        options: dict[str, Any] = {"headers": headers}
        if model.queue:
            options["queue"] = model.queue
        task = app.tasks.get(model.task)
        if task is not None:
            result = task.apply_async(args=args, kwargs=kwargs, **options)
        else:
            result = app.send_task(model.task, args=args, kwargs=kwargs, **options)
        runs.append(ManualRun(model.name, task_id=result.id))
        sent.append((model.task, args, kwargs, result.id))
    return runs


def _just_sent(sent: list[tuple[str, list, dict, str]], policy: Policy | None,
               key: str | None) -> str | None:
    """The id of a task this action sent that is identical under ``policy``
    (keyed with this row's spec: rows of one task can have different ones)."""
    if policy is None or key is None:
        return None
    for task, args, kwargs, task_id in sent:
        try:
            if task_key(task, args, kwargs, policy.key) == key:
                return task_id
        except UnkeyableError:
            continue
    return None
