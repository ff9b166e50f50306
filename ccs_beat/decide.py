"""The beat decision: emit a due entry, or skip it. Pure.

Inputs are plain data -- the entry's :class:`~ccs_beat.policy.Policy`, the
identical tasks a cluster read found, the entry's outstanding emissions from the
ledger, and why (if at all) the read is incomplete -- so the same function runs
in beat, in the unit tests and in simulations.

Order of the rules:

1. ``allow`` always emits.
2. An identical task seen on a worker (active, reserved or scheduled) blocks.
3. An outstanding emission of this entry blocks: seen on a worker, or sent and
   not yet picked up (still in the broker queue).
4. Otherwise, if something could not be read (a worker did not answer, the
   broker failed, an emission was last seen on a silent worker), ``on_unknown``
   decides: ``emit`` (fail open) or ``skip``.
5. Otherwise emit.

A skip under ``buffer_one`` asks the caller to remember one missed run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .events import BeatAction, Blocked, Reason
from .ledger import Emission, Status
from .policy import ALLOW, BUFFER_ONE, EMIT, Policy
from .snapshot import SeenTask

_STATE_ORDER = {"active": 0, "reserved": 1, "scheduled": 2, "queued": 3}

#: the task that stands in the way of an emission (age: the worker's clock for
#: an active task, beat's otherwise)
Blocker = Blocked


def describe_blocker(blocker: Blocked) -> str:
    where = f" on {blocker.worker}" if blocker.worker else " in the broker queue"
    age = f", age {blocker.age:.1f}s" if blocker.age is not None else ""
    return f"id {blocker.task_id}, {blocker.state}{where}{age}"


@dataclass(frozen=True)
class Decision:
    action: BeatAction
    reason: Reason
    detail: str                     # the reason in words
    blocker: Blocked | None = None
    unknown: bool = False           # the cluster could not be fully read
    buffer: bool = False            # remember this missed run (buffer_one)

    @property
    def emit(self) -> bool:
        return self.action is BeatAction.EMIT

    def describe(self) -> str:
        text = self.detail
        if self.blocker is not None:
            text += f" ({describe_blocker(self.blocker)})"
        return text


def _from_seen(task: SeenTask, source: str) -> Blocker:
    return Blocker(task_id=task.id, state=task.state, worker=task.worker, age=task.age,
                   source=source)


def _pick(tasks: Sequence[SeenTask]) -> SeenTask:
    """The most telling blocker: running before waiting, then the oldest."""
    return min(tasks, key=lambda t: (_STATE_ORDER.get(t.state, 9), -(t.age or 0.0), t.id))


def decide_entry(policy: Policy, *, matches: Sequence[SeenTask],
                 outstanding: Sequence[tuple[Emission, Status, SeenTask | None]],
                 incomplete: str | None, now: float) -> Decision:
    """Decide one due entry. See the module docstring for the rules."""
    if policy.overlap == ALLOW:
        return Decision(BeatAction.EMIT, Reason.OVERLAP_ALLOWED, "overlap allowed by policy")
    buffer = policy.overlap == BUFFER_ONE
    blocked = _blocked(matches, outstanding, now, buffer)
    if blocked is not None:
        return blocked
    unknown = [e for e, status, _ in outstanding if status is Status.UNKNOWN]
    reasons = [incomplete] if incomplete else []
    if unknown:
        reasons.append("previous emission " + ", ".join(
            f"{e.task_id} was last seen on {e.seen_on}" for e in unknown))
    if reasons:
        why = "cannot read the cluster (" + "; ".join(reasons) + ")"
        if policy.on_unknown == EMIT:
            return Decision(BeatAction.EMIT, Reason.CLUSTER_UNREADABLE, why + ", on_unknown=emit",
                            unknown=True)
        return Decision(BeatAction.SKIP, Reason.CLUSTER_UNREADABLE, why + ", on_unknown=skip",
                        unknown=True, buffer=buffer)
    return Decision(BeatAction.EMIT, Reason.NOTHING_IDENTICAL,
                    "no identical task queued or running")


def _blocked(matches: Sequence[SeenTask],
             outstanding: Sequence[tuple[Emission, Status, SeenTask | None]],
             now: float, buffer: bool) -> Decision | None:
    """Rules 2 and 3: the skip an identical task or an outstanding emission
    forces, or None."""
    if matches:
        return Decision(BeatAction.SKIP, Reason.IDENTICAL_IN_CLUSTER,
                        "identical task in the cluster",
                        blocker=_from_seen(_pick(matches), "cluster"), buffer=buffer)
    seen = [s for _, status, s in outstanding if status is Status.SEEN and s is not None]
    if seen:
        return Decision(BeatAction.SKIP, Reason.PREVIOUS_IN_CLUSTER,
                        "previous emission still in the cluster",
                        blocker=_from_seen(_pick(seen), "ledger"), buffer=buffer)
    queued = [e for e, status, _ in outstanding if status is Status.QUEUED]
    if not queued:
        return None
    emission = min(queued, key=lambda e: e.sent_at)
    expiry = ("" if emission.expires_at is None
              else f", expires in {max(0.0, emission.expires_at - now):.1f}s")
    return Decision(BeatAction.SKIP, Reason.PREVIOUS_QUEUED,
                    f"previous emission not picked up by any worker yet{expiry}",
                    blocker=Blocker(task_id=emission.task_id, state="queued",
                                    age=max(0.0, now - emission.sent_at), source="ledger"),
                    buffer=buffer)
