"""Turn the processes' decision events, logs and ``runs.jsonl`` into a timeline and a summary.

The demo only *reads* what the processes write: ccs_beat's decision events
(``decisions.jsonl``, the ``ccs_beat_event_log`` setting: beat's emissions
and skips, the worker guard's verdicts -- structured records, so no word of
ccs_beat's log lines is parsed), Celery's own per-task log lines (received,
discarded as expired) and errors, and the start and end that each task body
records. Overlaps are measured from the recorded body intervals, not taken
from anyone's word.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ccs_beat.decide import describe_blocker
from ccs_beat.events import BeatAction, DecisionEvent, GuardAction

#: the two periodic tasks of the demo, in display order
TASKS = ("blobs.collect_garbage", "users.update_all")
#: workers are named w1@HOST, w2@HOST; the timeline shows just "w1"
HOST = "ccs-demo"

_LINE = re.compile(r"^\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): (?P<level>\w+)/[^\]]*\] "
                   r"(?P<msg>.*)$")
_DISCARDED = re.compile(r"Discarding revoked task: (?P<task>[\w.]+)\[(?P<id>[^\]]+)\]")
#: Celery's own per-task lines: "Task NAME[ID] received", "... succeeded in ...", "... ignored"
_CELERY_TASK = re.compile(r"Task (?P<task>[\w.]+)\[(?P<id>[0-9a-f-]{36})\] (?P<status>\w+)")
_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def short(text: str) -> str:
    """Task ids cut to their first 8 characters and worker names to ``w1``."""
    return _UUID.sub(r"\1", text).replace(f"@{HOST}", "")


@dataclass
class Event:
    """One line of the timeline."""

    t: float                  # wall clock (epoch seconds)
    who: str                  # beat, w1, w2, operator
    what: str                 # EMIT, skip, guard, GUARD, start, end, run-now, ...
    task: str = ""
    detail: str = ""
    task_id: str | None = None

    def format(self, t0: float) -> str:
        """The printed line: time since ``t0``, who, what, task, details."""
        return (f"t+{self.t - t0:6.1f}s  {self.who:<8} {self.what:<7} {self.task:<22} "
                f"{self.detail}").rstrip()


@dataclass
class Run:
    """One task body, from ``runs.jsonl``."""

    task_id: str
    task: str
    worker: str
    start: float
    end: float | None = None
    ok: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Follower:
    """Read the complete lines a process has appended to its log since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def lines(self) -> list[str]:
        """The new complete lines; a line still being written waits for the next call."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in complete]


def _log_time(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def decision_event(event: DecisionEvent) -> Event:
    """The timeline line of one ccs_beat decision event."""
    task = event.task or ""
    blocker = "" if event.blocker is None else f" ({describe_blocker(event.blocker)})"
    if event.source == "guard":
        who = short(event.worker or "?")
        if event.action == GuardAction.RUN:
            return Event(event.at, who, "guard", task,
                         f"{short(event.task_id or '')} may run: {short(event.detail)} "
                         f"(checked in {event.took or 0:.2f}s)", event.task_id)
        return Event(event.at, who, "GUARD", task,
                     f"{short(event.task_id or '')} stepped aside: {short(event.detail)}",
                     event.task_id)
    if event.action == BeatAction.EMIT:
        buffered = " (buffered run)" if event.buffered else ""
        expiry = "" if event.expires_in is None else f", expires in {event.expires_in:.1f}s"
        return Event(event.at, "beat", "EMIT", task,
                     f"{short(event.task_id or '')}{buffered}: {event.detail}{expiry}",
                     event.task_id)
    return Event(event.at, "beat", "skip", task, short(event.detail + blocker))


def parse_log_line(line: str, who: str) -> Event | None:
    """The timeline event a Celery log line stands for, if any (ccs_beat's
    decisions come from :func:`decision_event`, not from here)."""
    m = _LINE.match(line)
    if m is None:
        return None
    t, level, msg = _log_time(m["ts"]), m["level"], m["msg"]
    if (d := _DISCARDED.search(msg)) is not None:
        return Event(t, who, "expired", d["task"],
                     f"{short(d['id'])} discarded: its message expired before a worker "
                     "picked it up", d["id"])
    if level in ("ERROR", "CRITICAL"):
        return Event(t, who, "error", "", short(msg))
    return None


def parse_run_record(line: str) -> dict[str, Any] | None:
    """One ``runs.jsonl`` record, or None for a torn or foreign line."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("event") in ("start", "end") else None


def _describe_end(rec: dict[str, Any], stopped: bool) -> str:
    took = f"ran {rec.get('duration', 0.0):.1f}s"
    if not rec.get("ok", True):
        if stopped:
            return f"{short(rec['id'])} cut short after {took[4:]} by the demo's stop"
        return f"{short(rec['id'])} FAILED after {took[4:]}: {rec.get('error')}"
    if "rows" in rec:
        what = f"{rec['rows']} users updated"
    elif "scanned" in rec:
        what = f"{rec['scanned']} objects checked, {rec['deleted']} expired ones deleted"
    else:
        what = "done"
    return f"{short(rec['id'])} {took}: {what}"


@dataclass
class Timeline:
    """Everything seen so far, and the summary computed from it."""

    events: list[Event] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    manual_ids: set[str] = field(default_factory=set)
    #: task ids a worker received and has not finished with (run, skipped or failed)
    in_flight: set[str] = field(default_factory=set)
    #: when the demo began stopping the processes: what fails after it, it caused
    stopping_at: float | None = None

    def stopped_by_us(self, t: float) -> bool:
        """Whether something that happened at ``t`` may be the demo's own stop."""
        return self.stopping_at is not None and t >= self.stopping_at

    def add_log_line(self, line: str, who: str) -> Event | None:
        """Take in one line of ``who``'s log; the timeline event, if it is one."""
        if (m := _CELERY_TASK.search(line)) is not None:
            if m["status"] == "received":
                self.in_flight.add(m["id"])
            else:
                self.in_flight.discard(m["id"])
        event = parse_log_line(line, who)
        if event is not None and event.what == "expired" and event.task_id:
            self.in_flight.discard(event.task_id)
        if event is not None:
            self.events.append(event)
        return event

    def add_decision(self, line: str) -> Event | None:
        """Take in one line of the decision event file; its timeline event."""
        try:
            event = decision_event(DecisionEvent.from_dict(json.loads(line)))
        except (ValueError, TypeError):
            return None   # a torn line (a process killed while writing it)
        self.events.append(event)
        return event

    def add_run_record(self, line: str) -> Event | None:
        """Take in one ``runs.jsonl`` line; its ``start`` or ``end`` event."""
        rec = parse_run_record(line)
        if rec is None:
            return None
        who = short(str(rec.get("worker") or "?"))
        task_id = rec["id"]
        if rec["event"] == "start":
            run = Run(task_id, rec["task"], who, rec["t"])
            self.runs[task_id] = run
            manual = " (the operator's copy)" if task_id in self.manual_ids else ""
            event = Event(rec["t"], who, "start", rec["task"], f"{short(task_id)}{manual}",
                          task_id)
        else:
            run = self.runs.get(task_id)
            if run is not None:
                run.end, run.ok = rec["t"], bool(rec.get("ok", True))
                run.info = {k: rec[k] for k in ("rows", "scanned", "deleted") if k in rec}
            event = Event(rec["t"], who, "end", rec["task"],
                          _describe_end(rec, self.stopped_by_us(rec["t"])), task_id)
        self.events.append(event)
        return event

    def add(self, event: Event) -> None:
        """Record an event the demo itself caused (the operator's run-now)."""
        self.events.append(event)

    # -- summary -----------------------------------------------------------------------

    def summary(self, now: float, *, manual_id: str | None = None) -> dict[str, Any]:
        """Counts per task, overlaps measured from the body intervals, and what
        happened to the operator's duplicate. ``now`` ends unfinished runs."""
        tasks: dict[str, dict[str, Any]] = {}
        for name in TASKS:
            runs = sorted((r for r in self.runs.values() if r.task == name),
                          key=lambda r: r.start)
            mine = [e for e in self.events if e.task == name]
            pairs = overlapping(runs, now)
            durations = [r.end - r.start for r in runs if r.end is not None]
            tasks[name] = {
                "emitted": sum(1 for e in mine if e.what == "EMIT"),
                "beat_skips": sum(1 for e in mine if e.what == "skip"),
                "runs": len(runs),
                "finished": sum(1 for r in runs if r.end is not None),
                "failed": sum(1 for r in runs
                              if r.ok is False and not self.stopped_by_us(r.end or now)),
                "guard_runs": sum(1 for e in mine if e.what == "guard"),
                "guard_skips": sum(1 for e in mine if e.what == "GUARD"),
                "expired": sum(1 for e in mine if e.what == "expired"),
                "overlaps": len(pairs),
                "overlapping": [[a, b] for a, b in pairs],
                "longest_run": round(max(durations), 2) if durations else None,
            }
        workers = Counter(r.worker for r in self.runs.values())
        errors = [e.detail for e in self.events
                  if e.what == "error" and not self.stopped_by_us(e.t)]
        return {"tasks": tasks, "runs_per_worker": dict(sorted(workers.items())),
                "manual_duplicate": self._manual(manual_id), "errors": errors}

    def _manual(self, task_id: str | None) -> dict[str, Any]:
        if task_id is None:
            return {"id": None, "outcome": "not_sent"}
        guard = [e for e in self.events if e.task_id == task_id and e.what in ("guard", "GUARD")]
        ran = task_id in self.runs
        if any(e.what == "GUARD" for e in guard):
            event = next(e for e in guard if e.what == "GUARD")
            return {"id": task_id, "outcome": "guard_skipped", "worker": event.who,
                    "reason": event.detail.split(": ", 1)[-1]}
        if ran:
            return {"id": task_id, "outcome": "ran", "worker": self.runs[task_id].worker}
        if any(e.task_id == task_id and e.what == "expired" for e in self.events):
            return {"id": task_id, "outcome": "expired"}
        return {"id": task_id, "outcome": "not_seen"}


def overlapping(runs: list[Run], now: float) -> list[tuple[str, str]]:
    """Pairs of runs (ids) whose bodies ran at the same time; an unfinished run
    lasts until ``now``."""
    pairs = []
    for a, b in itertools.combinations(sorted(runs, key=lambda r: r.start), 2):
        a_end = a.end if a.end is not None else now
        b_end = b.end if b.end is not None else now
        if b.start < a_end and a.start < b_end:
            pairs.append((a.task_id, b.task_id))
    return pairs
