"""Decision events: one structured record per beat decision and guard verdict.

Operators and tools should not parse log wording. Every decision -- beat
emitting or skipping a due entry, a guarded task running or stepping aside --
is described once by a frozen :class:`DecisionEvent`, and that one value is
what the signals carry, what the log record carries (``extra["ccs_event"]``,
so python-json-logger or structlog users get the fields) and what the
optional JSON-lines file (``ccs_beat_event_log``) holds. Pure: no I/O here;
:mod:`ccs_beat.reporting` sends an event to those places.

Field values are stable API; the words in ``detail`` are not.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class BeatAction(str, enum.Enum):
    """What beat did with a due entry."""

    EMIT = "emit"
    SKIP = "skip"


class GuardAction(str, enum.Enum):
    """What a guarded task did once its guard had read the cluster."""

    RUN = "run"
    STEP_ASIDE = "step_aside"


class Reason(str, enum.Enum):
    """Why, as a code (``detail`` says it in words)."""

    # beat
    NOTHING_IDENTICAL = "nothing_identical"        # emit: no identical task queued or running
    OVERLAP_ALLOWED = "overlap_allowed"            # emit: the policy allows overlap
    INVALID_ENTRY = "invalid_entry"                # emit: bad option or arguments, unchecked
    SENT_DIRECTLY = "sent_directly"                # emit: apply_async called by hand
    IDENTICAL_IN_CLUSTER = "identical_in_cluster"  # skip: seen on a worker
    PREVIOUS_IN_CLUSTER = "previous_in_cluster"    # skip: beat's emission seen on a worker
    PREVIOUS_QUEUED = "previous_queued"            # skip: beat's emission not picked up yet
    CLUSTER_UNREADABLE = "cluster_unreadable"      # on_unknown decided
    # guard
    COVERED = "covered"                            # step aside: a later run served it
    PEER_RUNNING = "peer_running"                  # step aside: an identical task runs
    PEER_RANKS_FIRST = "peer_ranks_first"          # step aside: a deciding peer wins
    RANKS_FIRST = "ranks_first"                    # run: first among deciding peers
    NO_PEER = "no_peer"                            # run: nothing identical active
    UNGUARDED = "unguarded"                        # run: cannot be keyed, or bad settings


@dataclass(frozen=True)
class Blocked:
    """The task that blocked a run (beat) or that a task stepped aside for
    (guard): ids and names from replies and messages, so data."""

    task_id: str
    state: str                 # active | reserved | scheduled | queued
    worker: str | None = None
    age: float | None = None
    source: str = "cluster"    # cluster | ledger | cover


@dataclass(frozen=True)
class DecisionEvent:
    """One decision, as every consumer sees it."""

    source: str                 # "beat" | "guard"
    action: str                 # a BeatAction or GuardAction value
    reason: str                 # a Reason value
    detail: str                 # the reason in words, as logged
    at: float                   # wall clock when decided
    task: str | None = None     # task name
    task_id: str | None = None  # beat: the id sent; guard: the deciding request's id
    entry: str | None = None    # beat entry name
    key: str | None = None      # identity key
    overlap: str | None = None
    on_unknown: str | None = None
    blocker: Blocked | None = None
    unknown: bool = False       # the cluster read was incomplete
    buffered: bool = False      # beat: a remembered run was sent, or one is remembered
    read_age: float | None = None   # seconds between the start of the cluster read and now
    expires_in: float | None = None  # beat: the message's expiry, seconds
    worker: str | None = None   # guard: the deciding worker
    took: float | None = None   # guard: seconds its decision took

    @property
    def emitted(self) -> bool:
        return self.action == BeatAction.EMIT

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: enum members as their values, the blocker as a dict.
        (Built field by field: ``dataclasses.asdict`` deep-copies, and this
        runs once per emission in a burst of thousands.)"""
        data = {name: getattr(self, name) for name in _FIELDS}
        for name in ("action", "reason"):
            value = data[name]
            data[name] = value.value if isinstance(value, enum.Enum) else value
        blocker = self.blocker
        if blocker is not None:
            data["blocker"] = {name: getattr(blocker, name) for name in _BLOCKER_FIELDS}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionEvent:
        """The event :meth:`as_dict` gave (a line of the event log)."""
        fields = dict(data)
        blocker = fields.get("blocker")
        fields["blocker"] = Blocked(**blocker) if isinstance(blocker, Mapping) else None
        return cls(**fields)


_FIELDS = tuple(f.name for f in fields(DecisionEvent))
_BLOCKER_FIELDS = tuple(f.name for f in fields(Blocked))
