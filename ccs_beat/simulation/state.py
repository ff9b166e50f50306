"""The simulated workers and requests, as mutable state of one replay.

Why its own module: the reply builder (:mod:`.replies`) and the event loop
(:mod:`.world`) both read it, and neither should own the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..snapshot import Membership

#: simulated pool process ids start here: above any real pid (Linux's pid_max
#: is at most 2**22), so ``task._which_is_me`` never takes one for its own
PID_BASE = 5_000_000


@dataclass(eq=False)
class Request:
    """One delivery of a message to a worker (a redelivery is another one)."""

    label: str
    task_id: str
    sent: float                        # true time its message was first sent
    stamp: Mapping[str, Any] | None
    worker: int
    eta_clock: float | None = None     # the message's ETA, on its sender's clock
    prefer_same: bool = False          # a redelivery onto the worker it names
    pid: int | None = None
    started: float | None = None       # true time it took a pool slot (its guard began)
    time_start: float | None = None    # its worker's clock then
    registered: bool = False           # on its worker's active list
    marked: bool = False               # decided to step aside (skipping mark)
    decided: bool = False
    finished: bool = False
    body_start: float | None = None
    reader: Reader | None = None


@dataclass(eq=False)
class Reader:
    """One guard read in flight: mirrors ``ClusterReader._read``'s collection."""

    query: float
    deadline: float
    expected: set[str]
    bodies: dict[str, Any] = field(default_factory=dict)
    surprise: bool = False

    def receive(self, host: str, payload: Mapping[str, Any]) -> None:
        """``on_message`` of the real read: a reply, and the peers it names."""
        self.bodies[host] = payload
        if host not in self.expected:
            self.surprise = True
        if isinstance(payload.get("peers"), list):
            self.expected.update(p for p in payload["peers"] if isinstance(p, str))

    def done(self) -> bool:
        return bool(self.expected) and not self.surprise and self.expected <= self.bodies.keys()


@dataclass(eq=False)
class CoverRecord:
    """A ``covering`` record on its worker: who ran, what it covered, when it ended."""

    request: Request
    ids: tuple[str, ...]
    sent: dict[str, list[float]] = field(default_factory=dict)
    ended_at: float | None = None


@dataclass(eq=False)
class Worker:
    """A worker host: clock skew, pool slots, the requests it holds."""

    index: int
    name: str
    skew: float
    joined: float = -math.inf
    crashed: float = math.inf
    stall: tuple[float, float] | None = None
    free: list[int] = field(default_factory=list)
    held: list[Request] = field(default_factory=list)       # Celery's reserved_requests
    scheduled: list[Request] = field(default_factory=list)  # ETA not yet due
    covers: list[CoverRecord] = field(default_factory=list)
    memberships: dict[int, Membership] = field(default_factory=dict)

    def alive(self, t: float) -> bool:
        return self.joined <= t < self.crashed

    def clock(self, t: float) -> float:
        return t + self.skew
