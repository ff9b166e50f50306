"""Many scenarios under every condition and both rules, and the table.

Why scenarios are spread over processes in index ranges and merged in order:
a full run must fit a 2-core machine's minute, and the table must stay the
same for the same seed however many processes computed it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from .model import CCS, CONDITIONS, RULES, TALK, TALK_DELAY, Condition, make_scenario
from .outcome import Outcome
from .world import play

#: how many failing scenarios of each kind a tally keeps, to replay with explain
EXAMPLES = 5


@dataclass
class Tally:
    """Failure counts of one rule over one condition's scenarios."""

    double_runs: int = 0
    in_sequence: int = 0
    suicides: int = 0
    lost_to_crash: int = 0
    #: indices of the first few failing scenarios, per kind
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, outcome: Outcome, index: int) -> None:
        for kind, happened in (("double_runs", outcome.double_run),
                               ("in_sequence", outcome.in_sequence),
                               ("suicides", outcome.suicide),
                               ("lost_to_crash", outcome.lost_to_crash)):
            if happened:
                setattr(self, kind, getattr(self, kind) + 1)
                found = self.examples.setdefault(kind, [])
                if len(found) < EXAMPLES:
                    found.append(index)

    def merge(self, other: Tally) -> None:
        for kind in ("double_runs", "in_sequence", "suicides", "lost_to_crash"):
            setattr(self, kind, getattr(self, kind) + getattr(other, kind))
            found = self.examples.setdefault(kind, [])
            found.extend(other.examples.get(kind, []))
            del found[EXAMPLES:]


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


def _tally(conditions: Sequence[Condition], seed: int, first: int, stop: int,
           ) -> list[dict[str, Tally]]:
    """Scenarios ``first`` to ``stop - 1``, every condition, both rules."""
    tallies = [{rule: Tally() for rule in RULES} for _ in conditions]
    for index in range(first, stop):
        scenario = make_scenario(seed, index)
        for per_rule, condition in zip(tallies, conditions, strict=True):
            for rule in RULES:
                per_rule[rule].add(play(scenario, condition, rule), index)
    return tallies


def run(conditions: Sequence[Condition] = CONDITIONS, scenarios: int = 2_000,
        seed: int = 0, processes: int = 1) -> list[ConditionResult]:
    """Replay ``scenarios`` seeded scenarios per condition under both rules.

    Every condition sees the same scenarios (same seed and indices), so rows
    differ only by what the condition changes. ``processes`` > 1 spreads the
    work (the functions the simulation calls are then the ones a fresh
    interpreter imports: monkeypatch in-process runs only).
    """
    conditions = list(conditions)
    results = [ConditionResult(c, scenarios, seed, {r: Tally() for r in RULES})
               for c in conditions]
    processes = max(1, min(processes, scenarios // 100 or 1))
    bounds = [scenarios * p // processes for p in range(processes + 1)]
    if processes == 1:
        parts = [_tally(conditions, seed, 0, scenarios)]
    else:
        # spawn, not fork: forking a process that runs threads (a test
        # session's broker clients, say) can copy a lock held mid-operation
        # and hang the child
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_tally, conditions, seed, a, b)
                       for a, b in itertools.pairwise(bounds)]
            parts = [f.result() for f in futures]
    for part in parts:
        for result, per_rule in zip(results, part, strict=True):
            for rule in RULES:
                result.tallies[rule].merge(per_rule[rule])
    return results


def default_processes() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def explain(seed: int, index: int, condition: Condition = CONDITIONS[0],
            rule: str = CCS) -> str:
    """A readable timeline of one scenario: hosts, skews, sends, decisions."""
    sc = make_scenario(seed, index)
    lines = [f"scenario {index} of seed {seed}, rule {rule}, condition {condition.name!r}",
             "workers: " + ", ".join(f"host{w} skew {s:+.3f}s slots {sc.slots[w]}"
                                     for w, s in enumerate(sc.skews))]
    for send in sc.sends:
        lines.append(f"{send.label}: id {send.task_id}, sent {send.sent:.3f}, "
                     f"delivered after {send.lag:.3f}s")
    trace: list[str] = []
    outcome = play(sc, condition, rule, trace)
    lines += trace
    lines.append(f"bodies {outcome.bodies}, killed {outcome.killed}; double run "
                 f"{outcome.double_run}, in sequence {outcome.in_sequence}, suicide "
                 f"{outcome.suicide}, lost to crash {outcome.lost_to_crash}")
    return "\n".join(lines)


def _cell(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.2f}%)" if count and total else str(count)


MODEL = ("Model: 2-4 workers (+1 joining), clocks skewed up to +/-30 s, 1-3 pool slots "
         "(half busy up to 4 s), 2-6 copies sent at once or spread over 3-6 s, 30% "
         "unstamped, delivery lag 0-2 s, bodies 0.1-60 s; each row adds what it names.")

HEADER = ("condition", "ccs_beat double runs", "ccs_beat runs twice in sequence",
          "ccs_beat collective suicides", "ccs_beat runs lost to crashes",
          "talk double runs", "talk twice in sequence", "talk suicides",
          "talk lost to crashes")


def format_table(results: Sequence[ConditionResult]) -> str:
    """The Markdown comparison table, preceded by how it was run."""
    lines = []
    for timing in sorted({r.condition.timing for r in results},
                         key=lambda x: (x.delay, x.timeout, x.margin)):
        lines.append(f"ccs_beat guard: D = {timing.delay:g} s, T = {timing.timeout:g} s, "
                     f"margin = {timing.margin:g} s (committed after "
                     f"{timing.committed_after:g} s).")
    if results:
        lines.append(f"Talk's rule: wait {TALK_DELAY:g} s, stock inspect().active() waiting "
                     f"the full T, earliest time_start wins. {results[0].scenarios} seeded "
                     f"scenarios per condition (seed {results[0].seed}), same scenarios for "
                     "both rules.")
        lines.append(MODEL)
    lines += ["", "| " + " | ".join(HEADER) + " |",
              "| " + " | ".join(["---"] + ["---:"] * (len(HEADER) - 1)) + " |"]
    for r in results:
        n = r.scenarios
        cells = [r.condition.name]
        for tally in (r.ccs, r.talk):
            cells += [_cell(tally.double_runs, n), _cell(tally.in_sequence, n),
                      _cell(tally.suicides, n), _cell(tally.lost_to_crash, n)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
