"""What a simulated scenario is made of: the conditions, and the seeded draws.

Why draws are a hash of names rather than a stream of ``random`` calls: the
two rules (and the conditions) make the world take different paths -- a copy
that skips frees its pool slot sooner, a retry sends a new request -- and a
stream would hand later draws to different things on each path. A draw named
``("lag", "c2/retry")`` is the same number whichever rule or condition asks,
so every row replays the very same hosts, clocks, sends and lags.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from ..guard import GuardTiming

#: the guarded rule (this library) and the talk's rule
CCS = "ccs_beat"
TALK = "talk"
RULES = (CCS, TALK)

#: the talk's short wait before its (stock, full-timeout) ``inspect().active()``
TALK_DELAY = 1.0

#: the simulated task: every copy is the same call
TASK_NAME = "app.tasks.sync_accounts"
TASK_ARGS = (7,)
TASK_KWARGS = {"full": True}

MAX_SKEW = 30.0
STAMP_FRACTION = 0.7
MAX_LAG = 2.0                  # broker delivery lag
BODY_DURATION = (0.1, 60.0)    # log-uniform
BUSY_UNTIL = 4.0               # other work holds a pool slot up to this long
CRASH_WINDOW = 8.0
STALL = 1.0                    # a stalled main process answers nothing for this long
GOSSIP_LAG = 1.0               # a joined worker shows in peers' gossip after this
GOSSIP_EXPIRY = 6.0            # a dead worker leaves peers' gossip after this
REDELIVERY_LAG = (1.0, 5.0)    # the broker hands a dead worker's messages on
WORKER_EXPIRY = 30.0           # ccs_beat_worker_expiry
COUNTDOWN = (1.0, 20.0)        # retry(countdown=...)
ETA_AHEAD = (0.5, 10.0)


@dataclass(frozen=True)
class Condition:
    """One row of the table: which failures and features apply."""

    name: str
    p_lost: float = 0.0            # each reply lost with this probability
    p_late: float = 0.0            # each reply arrives after T with this probability
    p_crash: float = 0.0           # scenarios in which one worker crashes
    p_stall: float = 0.0           # scenarios in which one worker's main process stalls
    p_join: float = 0.0            # scenarios in which a worker joins mid-burst
    registration_lag: float = 0.020
    exit_latency: float = 0.050
    stamped: float = STAMP_FRACTION
    redeliveries: bool = False     # the first run's message is delivered again
    retries: bool = False          # the first run calls retry(countdown=...)
    eta: bool = False              # the burst is sent with an ETA
    on_unknown: str = "emit"
    timing: GuardTiming = field(default_factory=GuardTiming)


CONDITIONS: tuple[Condition, ...] = (
    Condition("replies inside T"),
    Condition("registration lag up to 0.5 s", registration_lag=0.5),
    Condition("registration lag up to 1.5 s", registration_lag=1.5),
    Condition("skipper exit up to 2 s", exit_latency=2.0),
    Condition("unstamped messages only", stamped=0.0),
    Condition("same-id redeliveries", redeliveries=True),
    Condition("retry() with countdown", retries=True),
    Condition("ETA tasks", eta=True),
    Condition("worker joins mid-burst", p_join=1.0),
    Condition("worker joins mid-burst, 5% lost", p_join=1.0, p_lost=0.05),
    Condition("1% of replies lost, on_unknown=emit", p_lost=0.01),
    Condition("1% of replies lost, on_unknown=skip", p_lost=0.01, on_unknown="skip"),
    Condition("late replies (5% > T)", p_late=0.05),
    Condition("main process stalled 1 s", p_stall=1.0),
    Condition("worker crashes (10% of scenarios)", p_crash=0.10),
)


@dataclass(frozen=True)
class Dice:
    """Named uniform draws in [0, 1) of one scenario: same name, same number."""

    seed: int
    index: int

    def __call__(self, *name: object) -> float:
        text = repr((self.seed, self.index, *name)).encode()
        digest = hashlib.blake2b(text, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0 ** 64

    def uniform(self, low: float, high: float, *name: object) -> float:
        return low + (high - low) * self(*name)

    def pick(self, count: int, *name: object) -> int:
        return min(int(self(*name) * count), count - 1)


@dataclass(frozen=True)
class Send:
    """One copy of the burst: its message as the sender made it."""

    label: str
    task_id: str
    sent: float                    # true time
    sender_skew: float
    stamp_dice: float              # stamped if below the condition's fraction
    lag: float                     # broker delivery lag
    target: float                  # picks the worker


@dataclass(frozen=True)
class Scenario:
    """The base draws of one scenario (the rest is drawn by name as needed)."""

    seed: int
    index: int
    workers: int                           # from the start; one more may join
    skews: tuple[float, ...]
    slots: tuple[int, ...]
    busy: tuple[tuple[float, ...], ...]    # per worker, per slot: busy until
    sends: tuple[Send, ...]
    dice: Dice

    def duration(self, label: str) -> float:
        low, high = BODY_DURATION
        return math.exp(self.dice.uniform(math.log(low), math.log(high), "body", label))


def make_scenario(seed: int, index: int) -> Scenario:
    """Draw scenario ``index`` of run ``seed``; the same pair always gives the same one."""
    dice = Dice(seed, index)
    n_workers = 2 + dice.pick(3, "workers")
    skews = tuple(dice.uniform(-MAX_SKEW, MAX_SKEW, "skew", w) for w in range(n_workers + 1))
    slots = tuple(1 + dice.pick(3, "slots", w) for w in range(n_workers + 1))
    busy = tuple(tuple(dice.uniform(0.0, BUSY_UNTIL, "busy", w, s)
                       if dice("busy?", w, s) < 0.5 else 0.0 for s in range(n))
                 for w, n in enumerate(slots))
    pattern, base = dice("pattern"), dice.uniform(0.0, 3.0, "base")
    sends = []
    for c in range(2 + dice.pick(5, "copies")):
        if pattern < 0.5:                      # a burst: all at about the same instant
            sent = base + dice.uniform(0.0, 0.005, "sent", c)
        else:                                  # spread: some start after others decided
            sent = dice.uniform(0.0, 3.0 if pattern < 0.75 else 6.0, "sent", c)
        sends.append(Send(label=f"c{c}", task_id=f"{int(dice('id', c) * 2**63):016x}",
                          sent=sent, sender_skew=dice.uniform(-MAX_SKEW, MAX_SKEW, "sender", c),
                          stamp_dice=dice("stamped", c), lag=dice.uniform(0, MAX_LAG, "lag", c),
                          target=dice("target", c)))
    return Scenario(seed=seed, index=index, workers=n_workers, skews=skews,
                    slots=slots, busy=busy, sends=tuple(sends), dice=dice)


def worker_name(w: int) -> str:
    return f"celery@host{w}"
