"""What happened to one scenario under one rule, and how it is counted.

Why these four counts: they are the ways a singleton guard fails its user --
two bodies at once (double run), a body again for a request a finished body
already served (runs twice in sequence), no body at all (collective suicide),
or the only body killed by a crash (run lost).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Body:
    """One body that ran: ``how`` it ended is completed, retry or killed."""

    label: str
    sent: float         # true time its request's message was first sent
    start: float
    end: float
    how: str


@dataclass(frozen=True)
class Outcome:
    bodies: tuple[Body, ...]
    killed: tuple[str, ...]      # requests killed deciding or running

    @property
    def double_run(self) -> bool:
        spans = sorted((b.start, b.end) for b in self.bodies)
        return any(b[0] < a[1] for a, b in itertools.pairwise(spans))

    @property
    def in_sequence(self) -> bool:
        """A body began after a completed one had ended, for a request sent
        before that one began: the completed body had served it."""
        return any(a is not b and a.how == "completed" and a.end <= b.start
                   and b.sent < a.start for a in self.bodies for b in self.bodies)

    @property
    def completed(self) -> bool:
        return any(b.how == "completed" for b in self.bodies)

    @property
    def suicide(self) -> bool:
        return not self.completed and not self.killed

    @property
    def lost_to_crash(self) -> bool:
        return not self.completed and bool(self.killed)
