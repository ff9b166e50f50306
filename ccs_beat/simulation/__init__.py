"""Deterministic simulation of the worker guard against the talk's rule.

Why this exists: the guard's safety argument (``ccs_beat.guard``,
docs/guard.md) is a proof sketch about timings, and timing bugs do not show
up in a handful of integration runs. This package replays many seeded
scenarios -- skewed clocks, busy pools, redeliveries, retries, ETAs, joining,
stalled and crashing workers, lost and late replies -- in which simulated
workers answer the guard's broadcast with ``ccs_snapshot`` reply payloads,
and every decision goes through the production input path:
``ccs_beat.replies.snapshot_from_replies`` (``parse_reply``, ``Membership``) and
``judging.judge_copy``. The same scenarios are replayed under the rule of the
"Celery meets Singleton" talk, to show what the guard buys.

Modules: :mod:`.model` (conditions, seeded draws), :mod:`.state` and
:mod:`.replies` (simulated workers and their reply payloads), :mod:`.world`
(the event loop), :mod:`.rules` (the two decisions), :mod:`.outcome` and
:mod:`.report` (counting and the table). ``python -m ccs_beat.simulation``
prints the table.
"""

from .model import CCS, CONDITIONS, RULES, TALK, TALK_DELAY, Condition, Scenario, make_scenario
from .outcome import Body, Outcome
from .report import ConditionResult, Tally, explain, format_table, run
from .world import play

__all__ = ["CCS", "CONDITIONS", "RULES", "TALK", "TALK_DELAY", "Body", "Condition",
           "ConditionResult", "Outcome", "Scenario", "Tally", "explain", "format_table",
           "make_scenario", "play", "run"]
