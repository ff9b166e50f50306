"""The worker guard's decision: run this task's body, or step aside. Pure.

When a guarded task starts, :class:`ccs_beat.SingletonTask` waits the settle
delay ``D``, reads the cluster once (replies within ``T``), and hands the
identical tasks it found to :func:`decide` as plain :class:`Peer` values. The
simulation (:mod:`ccs_beat.simulation`) calls the very same function.

Why this cannot double-run or collectively suicide (docs/guard.md):

* **Rank** orders duplicates the same way for every observer: the sender's
  ``sent_at`` stamp (or, without a stamp, the ``time_start`` the holding
  worker reports -- one number, seen identically by all), then the task id,
  then the worker, then the ``time_start`` (two requests of one message on one
  worker: the older first). Clock skew changes *who* wins, never *whether*
  one wins.
* **Phase** of a peer is its age ``now - time_start`` with both numbers from
  the *peer's* worker clock, so skew between hosts cancels out. A peer older
  than ``D + T + margin`` has finished deciding; if it is still active it
  chose to run: it is **committed**. A younger one is still **deciding**.
* **Rule**: skip if a run that began after this request was sent has covered
  it (``covered_by``: that run's read saw this request waiting, see
  :mod:`ccs_beat.covering`); skip if any identical peer is committed; skip if
  a deciding peer has a lower rank; otherwise run.
* **No double run** when ``D >= T + 2 * margin``: if B ran without seeing A,
  A registered after B's query reached A's worker (at >= b + D), so A's query
  reaches B's worker at >= b + 2D - margin >= b + D + T + margin: B is
  committed in A's eyes and A skips. (``margin`` absorbs the registration lag
  and the broadcast's transit.)
* **No collective suicide**: a committed peer did not skip (a skipper ends
  within ``D + T`` plus milliseconds, inside the margin), and among deciding
  peers the one of lowest rank skips for nobody.

What it cannot promise is stated in ``docs/guard.md``: lost or late replies,
workers that cannot answer (``solo`` pool), a worker starved for longer than
the margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from .events import Blocked, GuardAction, Reason

RUN, STEP_ASIDE = GuardAction.RUN, GuardAction.STEP_ASIDE

#: a rank: (sent_at or time_start, task id, worker host name, time_start). The
#: last part tells apart two requests of one message on one worker (a
#: redelivery beside the original): the older ranks first
Rank = tuple[float, str, str, float]


@dataclass(frozen=True)
class GuardTiming:
    """``D`` (settle delay), ``T`` (reply timeout) and the margin, in seconds."""

    delay: float = 1.5
    timeout: float = 1.0
    margin: float = 0.25

    @property
    def committed_after(self) -> float:
        """Age beyond which a still-active peer has decided to run."""
        return self.delay + self.timeout + self.margin

    def problem(self) -> str | None:
        """Why these numbers break the safety condition, or None."""
        if self.delay < self.timeout + 2 * self.margin:
            return (f"the guard's settle delay ({self.delay:g}s) must be at least its reply "
                    f"timeout ({self.timeout:g}s) plus twice its margin ({self.margin:g}s), "
                    "or two duplicates can both run")
        return None


@dataclass(frozen=True)
class Peer:
    """An identical task seen active on a worker.

    ``age`` is ``now - time_start`` by that worker's own clock; None when the
    reply gave no ``time_start`` for it, and then it counts as committed (it is
    running, and how long it has decided cannot be told). ``guarded`` is False
    for a task read through the stock inspect commands (a worker without
    ccs_beat, whose tasks run unguarded): it is committed too. The worker guard
    itself never reads such workers -- it reads only ``ccs_snapshot`` replies,
    and a worker that cannot give one makes the read incomplete, so
    ``on_unknown`` decides -- beat's read (and the simulation) do.
    """

    task_id: str
    worker: str
    rank: Rank
    age: float | None
    guarded: bool = True

    def describe(self) -> str:
        age = f", age {self.age:.1f}s" if self.age is not None else ""
        return f"id {self.task_id} on {self.worker}{age}"


@dataclass(frozen=True)
class GuardVerdict:
    action: GuardAction
    reason: Reason
    detail: str                      # the reason in words
    winner: Peer | None = None       # the peer this task stepped aside for
    unknown: bool = False            # the read was incomplete

    @property
    def run(self) -> bool:
        return self.action is GuardAction.RUN

    def blocker(self, source: str = "cluster") -> Blocked | None:
        """The winner as an event's blocker."""
        winner = self.winner
        return None if winner is None else Blocked(
            task_id=winner.task_id, state="active", worker=winner.worker, age=winner.age,
            source=source)


def is_clock(value: Any) -> TypeGuard[float]:
    """True for a finite number of seconds (not a bool, not NaN, not 10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def rank_of(task_id: str, worker: str, stamp: Any, time_start: float | None) -> Rank:
    """The rank every observer computes for a task: stamp first, else time_start."""
    started = float(time_start) if is_clock(time_start) else float("inf")
    sent = sent_at(stamp)      # absent, or forged: NaN would make every comparison false
    return (started if sent is None else sent, task_id, worker, started)


def sent_at(stamp: Any) -> float | None:
    """The sender's clock in a stamp, if it holds one that is a clock."""
    value: Any = stamp.get("sent_at") if isinstance(stamp, Mapping) else None
    return float(value) if is_clock(value) else None


def decide_run(me: Rank, peers: Sequence[Peer], timing: GuardTiming, *,
           incomplete: str | None = None, on_unknown: str = "emit",
           covered_by: Peer | None = None) -> GuardVerdict:
    """Run or skip, from the identical peers active in the cluster.

    ``me`` is this task's rank; ``peers`` are the *other* identical tasks seen
    active (any state other than active cannot overlap a body). ``incomplete``
    says why the read may have missed a worker; then ``on_unknown`` decides
    whether an otherwise clear run goes ahead (``emit``) or not (``skip``).
    ``covered_by`` is a run whose read saw this request waiting: its body
    began after this request was sent, so it served it.
    """
    if covered_by is not None:
        return GuardVerdict(STEP_ASIDE, Reason.COVERED, "an identical run that began after "
                            f"this request was sent has served it ({covered_by.describe()})",
                            winner=covered_by)
    committed = [p for p in peers
                 if not p.guarded or p.age is None or p.age > timing.committed_after]
    if committed:
        winner = min(committed, key=lambda p: (-(p.age or 0.0), p.rank))
        state = "running unguarded" if not winner.guarded else "already running"
        return GuardVerdict(STEP_ASIDE, Reason.PEER_RUNNING,
                            f"an identical task is {state} ({winner.describe()})", winner=winner)
    ahead = [p for p in peers if p.rank < me]
    if ahead:
        winner = min(ahead, key=lambda p: p.rank)
        return GuardVerdict(STEP_ASIDE, Reason.PEER_RANKS_FIRST, "an identical task started "
                            f"at the same time ranks first ({winner.describe()})", winner=winner)
    if incomplete:
        if on_unknown == "skip":
            return GuardVerdict(STEP_ASIDE, Reason.CLUSTER_UNREADABLE,
                                f"cannot read the cluster ({incomplete}), on_unknown=skip",
                                unknown=True)
        return GuardVerdict(RUN, Reason.CLUSTER_UNREADABLE,
                            f"no identical task seen, but {incomplete}; on_unknown=emit",
                            unknown=True)
    if peers:
        return GuardVerdict(RUN, Reason.RANKS_FIRST,
                            f"ranks first among {len(peers) + 1} identical tasks")
    return GuardVerdict(RUN, Reason.NO_PEER, "no identical task running")
