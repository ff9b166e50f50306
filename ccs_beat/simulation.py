"""Deterministic simulation of the worker guard against the talk's rule.

Why this exists: the guard's safety argument (``ccs_beat.guard``, docs/guard.md)
is a proof sketch about timings, and timing bugs do not show up in a handful of
integration runs. This module replays many seeded scenarios -- skewed clocks,
random delivery lags, duplicates sent at once or seconds apart, lost and late
replies, worker crashes -- and feeds every decision through the *production*
function :func:`ccs_beat.guard.decide` (looked up on the module at call time,
so a broken rule shows up here). The same scenarios are replayed under the
rule of the "Celery meets Singleton" talk (earliest ``time_start`` wins, each
worker comparing its own clock with the others'), to show what the guard buys.

The model, per scenario (all times in true seconds, ``random.Random`` seeded
by the run's seed and the scenario's index):

* 2--4 workers, each clock skewed by up to +/-30 s; 2--6 duplicates of one
  task, each sent by a sender with its own skew (its ``sent_at`` stamp is the
  sender's clock), 30 % of them without a stamp. Sends come all at once, spread
  over 3 s or spread over 6 s (so that some start after others committed).
* Each duplicate reaches a random worker 0--2 s after its send; the guard
  starts then (true time ``g``), the worker reports ``time_start`` = its clock
  at ``g`` and lists the task as active from ``g + eps`` (eps 0--20 ms).
* The guard waits ``D``, broadcasts; the query reaches each worker after
  0--T/4, which replies with what is active *at that instant* and its clock;
  the reply takes another 0--3T/4, so a round trip may use all of T (guards
  decide as late as the protocol allows). The guard decides when every reply
  is in, or at ``g + D + T`` when one is missing (lost, late, or its worker
  dead); it then passes ``incomplete`` with ``on_unknown="emit"``.
* A skipper leaves the active list 0--50 ms after deciding; a runner's body
  lasts 20--60 s. A crash (some conditions) kills everything on one worker at
  a random instant in 0--8 s; later deliveries to it go to another worker.

Events are processed in true-time order (a heap), so a reply only ever shows
registrations and ends that happened before the query reached that worker.
Everything random is drawn up front from the seed, and the condition only
decides which drawn losses/late replies/crashes apply: every condition and
both rules replay exactly the same hosts, skews, sends and lags.

Run ``python -m ccs_beat.simulation`` for the comparison table.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import guard
from .guard import GuardTiming, Peer, rank_of

#: the guarded rule (this library) and the talk's rule
CCS = "ccs_beat"
TALK = "talk"
RULES = (CCS, TALK)

#: the talk's short wait before its (stock, full-timeout) ``inspect().active()``
TALK_DELAY = 1.0

MAX_SKEW = 30.0
STAMP_FRACTION = 0.7
MAX_LAG = 2.0
MAX_REGISTRATION_LAG = 0.020
MAX_EXIT_LATENCY = 0.050
BODY_DURATION = (20.0, 60.0)
CRASH_WINDOW = 8.0

# event kinds, in the order they are handled when they fall on the same instant
_CRASH, _END, _REGISTER, _SNAPSHOT, _DECIDE = range(5)


@dataclass(frozen=True)
class Condition:
    """One row of the table: which failures apply, and the guard's timing."""

    name: str
    p_lost: float = 0.0        # each reply lost with this probability
    p_late: float = 0.0        # each reply arrives after T (ignored) with this probability
    p_crash: float = 0.0       # fraction of scenarios in which one worker crashes
    timing: GuardTiming = field(default_factory=GuardTiming)


CONDITIONS: tuple[Condition, ...] = (
    Condition("replies inside T"),
    Condition("1% of replies lost", p_lost=0.01),
    Condition("late replies (5% > T)", p_late=0.05),
    Condition("worker crashes (10% of scenarios)", p_crash=0.10),
)


@dataclass(frozen=True)
class Link:
    """Random draws for one guard query to one worker (fractions of T, dice)."""

    to_worker: float        # query transit, fraction of T (0..1/4)
    back: float             # reply transit, fraction of T (0..3/4)
    lost: float             # reply lost if < p_lost
    late: float             # reply late if < p_late


@dataclass(frozen=True)
class Duplicate:
    task_id: str
    sent: float             # true send time
    stamp: dict | None      # {"sent_at": sender clock} or None (sent without ccs_beat)
    start: float            # true time the guard begins (send + delivery lag)
    worker: int             # worker it is delivered to, unless that one has crashed
    eps: float              # registration lag (visible to queries from start + eps)
    exit_latency: float     # a skipper leaves the active list this long after deciding
    duration: float         # a runner's body lasts this long
    redeliver: float        # picks the replacement worker after a crash
    links: tuple[Link, ...]


@dataclass(frozen=True)
class Scenario:
    seed: int
    index: int
    skews: tuple[float, ...]
    duplicates: tuple[Duplicate, ...]
    crash_dice: float       # a crash happens if < p_crash
    crash_worker: int
    crash_time: float


def make_scenario(seed: int, index: int) -> Scenario:
    """Draw scenario ``index`` of run ``seed``; the same pair always gives the same one."""
    rng = random.Random(f"ccs_beat.simulation:{seed}:{index}")
    n_workers = rng.randint(2, 4)
    skews = tuple(rng.uniform(-MAX_SKEW, MAX_SKEW) for _ in range(n_workers))
    n_dups = rng.randint(2, 6)
    pattern = rng.random()
    base = rng.uniform(0.0, 3.0)
    dups = []
    for _ in range(n_dups):
        if pattern < 1 / 3:                   # a burst: all at about the same instant
            sent = base + rng.uniform(0.0, 0.005)
        elif pattern < 2 / 3:
            sent = rng.uniform(0.0, 3.0)
        else:                                  # some start after others committed
            sent = rng.uniform(0.0, 6.0)
        sender_skew = rng.uniform(-MAX_SKEW, MAX_SKEW)
        stamp = {"sent_at": sent + sender_skew} if rng.random() < STAMP_FRACTION else None
        lag = rng.uniform(0.0, MAX_LAG)
        links = tuple(Link(rng.uniform(0.0, 0.25), rng.uniform(0.0, 0.75),
                           rng.random(), rng.random()) for _ in range(n_workers))
        dups.append(Duplicate(
            task_id=f"{rng.getrandbits(64):016x}", sent=sent, stamp=stamp,
            start=sent + lag, worker=rng.randrange(n_workers),
            eps=rng.uniform(0.0, MAX_REGISTRATION_LAG),
            exit_latency=rng.uniform(0.0, MAX_EXIT_LATENCY),
            duration=rng.uniform(*BODY_DURATION), redeliver=rng.random(), links=links))
    return Scenario(seed=seed, index=index, skews=skews, duplicates=tuple(dups),
                    crash_dice=rng.random(), crash_worker=rng.randrange(n_workers),
                    crash_time=rng.uniform(0.0, CRASH_WINDOW))


def worker_name(w: int) -> str:
    return f"celery@host{w}"


@dataclass(frozen=True)
class Outcome:
    """What happened to one scenario under one rule."""

    bodies: tuple[tuple[int, float, float], ...]   # (duplicate, true start, true end)
    killed: tuple[int, ...]                        # undecided or running when their worker died
    completed: int                                 # bodies that ran to their end

    @property
    def double_run(self) -> bool:
        spans = sorted((s, e) for _, s, e in self.bodies)
        return any(b[0] < a[1] for a, b in itertools.pairwise(spans))

    @property
    def suicide(self) -> bool:
        return not self.bodies and not self.killed

    @property
    def lost_to_crash(self) -> bool:
        return bool(self.killed) and not self.completed


def _talk_runs(own_time_start: float, seen: Sequence[tuple[float, Peer]]) -> bool:
    """The talk's rule: skip if an identical active task started earlier.

    "Earlier" compares the peer's ``time_start`` (the peer worker's clock) with
    this task's own start (this worker's clock): the flaw under clock skew. A
    duplicate that starts after another is already running, on a worker whose
    clock is behind, looks earlier and runs too. (In this model it cannot
    collectively suicide: any two duplicates compare the same two numbers, so
    the earliest one visible never steps aside; its failure is the double run.)
    """
    return not any(ts < own_time_start for ts, _ in seen)


def play(scenario: Scenario, condition: Condition, rule: str,
         trace: list[str] | None = None) -> Outcome:
    """Replay one scenario under one rule, in true-time order.

    The guard's decision is :func:`ccs_beat.guard.decide` itself; ``trace``
    (when given) collects a readable timeline for investigating a failure.
    """
    timing = condition.timing
    big_t = timing.timeout
    skews = scenario.skews
    dups = scenario.duplicates
    n = len(dups)
    crashed = condition.p_crash > 0 and scenario.crash_dice < condition.p_crash
    crash_at = scenario.crash_time if crashed else math.inf
    dead_worker = scenario.crash_worker if crashed else -1
    delay = timing.delay if rule == CCS else TALK_DELAY

    where = []
    for d in dups:
        w = d.worker
        if w == dead_worker and d.start >= crash_at:      # redelivered to a survivor
            others = [x for x in range(len(skews)) if x != dead_worker]
            w = others[int(d.redeliver * len(others))]
        where.append(w)
    time_start = [d.start + skews[where[k]] for k, d in enumerate(dups)]

    events: list[tuple[float, int, int, int, int]] = []
    missing: list[list[str]] = [[] for _ in range(n)]
    if crashed:
        events.append((crash_at, _CRASH, 0, -1, -1))
    seq = 1
    for k, d in enumerate(dups):
        events.append((d.start + d.eps, _REGISTER, seq, k, -1))
        seq += 1
        query = d.start + delay
        last_reply = query
        for w, link in enumerate(d.links):
            reach = query + link.to_worker * big_t
            if w == dead_worker and reach >= crash_at:
                missing[k].append(f"{worker_name(w)} is down")
                continue
            if link.lost < condition.p_lost:
                missing[k].append(f"reply from {worker_name(w)} lost")
                continue
            if link.late < condition.p_late:
                missing[k].append(f"reply from {worker_name(w)} late")
                continue
            events.append((reach, _SNAPSHOT, seq, k, w))
            seq += 1
            last_reply = max(last_reply, reach + link.back * big_t)
        # the guard stops waiting once every reply is in; stock inspect waits the full T
        decide_at = last_reply if rule == CCS and not missing[k] else query + big_t
        events.append((decide_at, _DECIDE, seq, k, -1))
        seq += 1
    heapq.heapify(events)

    registered = [False] * n
    ended = [False] * n
    running = [False] * n
    decided = [False] * n
    killed: list[int] = []
    body_start: dict[int, float] = {}
    body_end: dict[int, float] = {}
    seen: list[list[tuple[float, Peer]]] = [[] for _ in range(n)]

    def log(t: float, text: str) -> None:
        if trace is not None:
            trace.append(f"{t:8.3f}  {text}")

    while events:
        t, kind, _, k, w = heapq.heappop(events)
        if kind == _CRASH:
            log(t, f"{worker_name(dead_worker)} crashes")
            for j in range(n):
                if where[j] == dead_worker and dups[j].start < t and not ended[j]:
                    ended[j] = True
                    if running[j] or not decided[j]:
                        killed.append(j)
                        if running[j]:
                            body_end[j] = t
                        log(t, f"  dup {j} killed ({'running' if running[j] else 'deciding'})")
        elif kind == _REGISTER:
            if not ended[k]:
                registered[k] = True
                log(t, f"dup {k} active on {worker_name(where[k])}, time_start "
                       f"{time_start[k]:.3f}, stamp {dups[k].stamp}")
        elif kind == _SNAPSHOT:
            if ended[k]:
                continue
            now = t + skews[w]
            for j in range(n):
                if j != k and where[j] == w and registered[j] and not ended[j]:
                    ts = time_start[j]
                    peer = Peer(dups[j].task_id, worker_name(w),
                                rank=rank_of(dups[j].task_id, worker_name(w), dups[j].stamp, ts),
                                age=now - ts)
                    seen[k].append((ts, peer))
            if trace is not None:
                visible = [j for j in range(n)
                           if j != k and where[j] == w and registered[j] and not ended[j]]
                log(t, f"dup {k}'s query reaches {worker_name(w)} (clock {now:.3f}): "
                       f"sees {visible}")
        elif kind == _DECIDE:
            if ended[k]:
                continue
            decided[k] = True
            if rule == CCS:
                me = rank_of(dups[k].task_id, worker_name(where[k]), dups[k].stamp, time_start[k])
                incomplete = "; ".join(missing[k]) or None
                verdict = guard.decide(me, [p for _, p in seen[k]], timing,
                                       incomplete=incomplete, on_unknown="emit")
                runs = verdict.run
                log(t, f"dup {k} decides {verdict.action}: {verdict.reason}")
            else:
                runs = _talk_runs(time_start[k], seen[k])
                log(t, f"dup {k} decides {'run' if runs else 'skip'} (talk's rule)")
            if runs:
                running[k] = True
                body_start[k] = t
                heapq.heappush(events, (t + dups[k].duration, _END, seq, k, -1))
            else:
                heapq.heappush(events, (t + dups[k].exit_latency, _END, seq, k, -1))
            seq += 1
        elif kind == _END and not ended[k]:
            ended[k] = True
            if running[k]:
                body_end[k] = t
            log(t, f"dup {k} ends")

    bodies = tuple((k, s, body_end[k]) for k, s in sorted(body_start.items()))
    completed = sum(1 for k in body_start if k not in killed)
    return Outcome(bodies=bodies, killed=tuple(killed), completed=completed)


@dataclass
class Tally:
    """Failure counts of one rule over one condition's scenarios."""

    double_runs: int = 0
    suicides: int = 0
    lost_to_crash: int = 0
    #: indices of the first few failing scenarios, to replay with :func:`explain`
    examples: list[int] = field(default_factory=list)

    def add(self, outcome: Outcome, index: int) -> None:
        failed = False
        if outcome.double_run:
            self.double_runs += 1
            failed = True
        if outcome.suicide:
            self.suicides += 1
            failed = True
        if outcome.lost_to_crash:
            self.lost_to_crash += 1
        if failed and len(self.examples) < 5:
            self.examples.append(index)


@dataclass
class ConditionResult:
    condition: Condition
    scenarios: int
    seed: int
    tallies: dict[str, Tally]

    @property
    def ccs(self) -> Tally:
        return self.tallies[CCS]

    @property
    def talk(self) -> Tally:
        return self.tallies[TALK]


def run(conditions: Sequence[Condition] = CONDITIONS, scenarios: int = 20_000,
        seed: int = 0) -> list[ConditionResult]:
    """Replay ``scenarios`` seeded scenarios per condition under both rules.

    Every condition sees the same scenarios (same seed and indices), so rows
    differ only by the failures the condition injects.
    """
    results = [ConditionResult(c, scenarios, seed, {r: Tally() for r in RULES})
               for c in conditions]
    for i in range(scenarios):
        scenario = make_scenario(seed, i)
        for result in results:
            for rule in RULES:
                result.tallies[rule].add(play(scenario, result.condition, rule), i)
    return results


def explain(seed: int, index: int, condition: Condition = CONDITIONS[0],
            rule: str = CCS) -> str:
    """A readable timeline of one scenario: hosts, skews, sends, who saw whom."""
    sc = make_scenario(seed, index)
    lines = [f"scenario {index} of seed {seed}, rule {rule}, condition {condition.name!r}",
             "worker skews: " + ", ".join(f"{worker_name(w)} {s:+.3f}s"
                                          for w, s in enumerate(sc.skews))]
    for k, d in enumerate(sc.duplicates):
        lines.append(f"dup {k}: id {d.task_id}, sent {d.sent:.3f}, stamp {d.stamp}, "
                     f"guard starts {d.start:.3f}, delivered to {worker_name(d.worker)}")
    trace: list[str] = []
    outcome = play(sc, condition, rule, trace)
    lines += trace
    lines.append(f"bodies {outcome.bodies}, killed {outcome.killed}, "
                 f"double run {outcome.double_run}, suicide {outcome.suicide}")
    return "\n".join(lines)


def _cell(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.2f}%)" if count and total else str(count)


def format_table(results: Sequence[ConditionResult]) -> str:
    """The Markdown comparison table, preceded by the timing it was run with."""
    timings = {r.condition.timing for r in results}
    lines = []
    for timing in sorted(timings, key=lambda x: (x.delay, x.timeout, x.margin)):
        lines.append(f"ccs_beat guard: D = {timing.delay:g} s, T = {timing.timeout:g} s, "
                     f"margin = {timing.margin:g} s (committed after "
                     f"{timing.committed_after:g} s).")
    if results:
        lines.append(f"Talk's rule: wait {TALK_DELAY:g} s, stock inspect().active() waiting "
                     f"the full T, earliest time_start wins. {results[0].scenarios} seeded "
                     f"scenarios per condition (seed {results[0].seed}), same scenarios for "
                     "both rules.")
    lines.append("")
    header = ("condition", "scenarios", "ccs_beat double runs", "ccs_beat collective suicides",
              "ccs_beat runs lost to crashes", "talk double runs", "talk suicides",
              "talk lost to crashes")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for r in results:
        n = r.scenarios
        cells = (r.condition.name, str(n), _cell(r.ccs.double_runs, n),
                 _cell(r.ccs.suicides, n), _cell(r.ccs.lost_to_crash, n),
                 _cell(r.talk.double_runs, n), _cell(r.talk.suicides, n),
                 _cell(r.talk.lost_to_crash, n))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccs_beat.simulation",
        description="Replay seeded scenarios through ccs_beat's guard and the talk's rule.")
    parser.add_argument("--scenarios", type=int, default=20_000,
                        help="scenarios per condition (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument("--quick", action="store_true", help="1000 scenarios, for a smoke test")
    args = parser.parse_args(argv)
    scenarios = 1_000 if args.quick else args.scenarios
    if scenarios < 1:
        parser.error("--scenarios must be at least 1")
    began = time.perf_counter()
    results = run(CONDITIONS, scenarios, args.seed)
    print(format_table(results))
    print(f"({time.perf_counter() - began:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
