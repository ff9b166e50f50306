"""Each entry's policy and key: the one place they are resolved for beat.

An entry's policy is its ``singleton`` option, else its task's declaration
(``singleton=`` on a :class:`~ccs_beat.SingletonTask`), else the app default;
its key is computed from its task and arguments under that policy's key spec.
Options may come from a database row or Redis: only key functions registered
in code may be named, and anything wrong is raised naming the entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .entries import (
    OPTION,
    BeatEntry,
    describe_entry,
    entry_arguments,
    entry_arguments_unevaluated,
)
from .errors import ConfigurationError, UnkeyableError
from .identity import task_key
from .policy import Policy, Settings, parse_policy


def task_default(app: Any, name: str | None, settings: Settings) -> Policy:
    """The policy of task ``name`` where no entry option or row says otherwise:
    its own declaration (``singleton=`` on a :class:`SingletonTask`), else
    ``ccs_beat_default_policy``. Beat, the guard, ``ccs status`` and the
    admin's "Run selected tasks" all start from it, so one task has one
    identity whoever looks. Raises ConfigurationError for a bad declaration."""
    task = app.tasks.get(name) if name else None
    getter = getattr(task, "ccs_policy", None)
    declared = getter() if getter is not None else None
    return declared if declared is not None else settings.default_policy



class EntryPolicies:
    """Policies of one app's entries, parsed once per distinct option value."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._cache: dict[tuple[str, Any, str], Policy] = {}

    def policy_for(self, name: str, options: Mapping[str, Any] | None,
                   task: Any = None) -> Policy:
        """The policy of entry ``name`` of task ``task`` (which must be a task
        name: a row or a Redis entry can hold anything)."""
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(f"{describe_entry(name)}: options is {options!r:.60}, "
                                     "not a dict")
        if task is not None and not isinstance(task, str):
            raise ConfigurationError(f"{describe_entry(name)}: task is {task!r:.60}, not a "
                                     "task name")
        raw = (options or {}).get(OPTION)
        cache_key = (name, task, repr(raw))
        policy = self._cache.get(cache_key)
        if policy is None:
            policy = parse_policy(raw, default=task_default(self.app, task, self.settings),
                                  where=f"{describe_entry(name)}: {OPTION}",
                                  functions=self.settings.key_functions)
            self._cache[cache_key] = policy
        return policy

    def of(self, entry: BeatEntry) -> Policy:
        return self.policy_for(entry.name, entry.options, entry.task)

    def key_for(self, entry: BeatEntry, policy: Policy) -> str:
        """The entry's identity key, its lazy arguments called."""
        args, kwargs, _ = entry_arguments(entry)
        try:
            return task_key(entry.task, args, kwargs, policy.key)
        except UnkeyableError as exc:
            raise UnkeyableError(f"{describe_entry(entry.name)}: {exc}") from exc

    def validate(self, entries: Mapping[str, Any]) -> dict[str, Policy]:
        """Every entry's policy; one error listing every problem (an
        operator fixes them in one pass). Lazy arguments are not called."""
        problems, policies = [], {}
        for name, entry in entries.items():
            try:
                policies[name] = self._checked(name, entry)
            except ConfigurationError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigurationError(
                "ccs_beat: invalid configuration:\n  - " + "\n  - ".join(problems))
        return policies

    def _checked(self, name: str, entry: Any) -> Policy:
        policy = self.policy_for(name, getattr(entry, "options", None),
                                 getattr(entry, "task", None))
        if policy.checked:
            args, kwargs, lazy = entry_arguments_unevaluated(entry)
            if not lazy:
                try:
                    task_key(entry.task, args, kwargs, policy.key)
                except UnkeyableError as exc:
                    raise UnkeyableError(
                        f"{describe_entry(name)}: arguments cannot be keyed: {exc}") from exc
        return policy
