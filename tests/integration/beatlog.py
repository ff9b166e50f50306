"""Read ccs_beat's decisions back out of a beat log."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_LINE = re.compile(r"^\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): (?P<level>\w+)/[^\]]*\] "
                   r"(?P<msg>.*)$")
_EMITTED = re.compile(r"ccs_beat: emitted '(?P<entry>[^']+)' \((?P<task>[^)]+)\) as "
                      r"(?P<id>[0-9a-f-]{36})(?P<buffered> \(buffered run\))?: (?P<why>.*)$")
_SKIPPED = re.compile(r"ccs_beat: skipped '(?P<entry>[^']+)' \((?P<task>[^)]+)\): (?P<why>.*)$")


@dataclass
class Event:
    kind: str          # emitted | skipped
    entry: str
    at: float          # beat's log timestamp (local time, seconds)
    level: str
    why: str
    task_id: str | None = None
    buffered: bool = False


def events(text: str, entry: str | None = None) -> list[Event]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        at = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        msg = m["msg"]
        if (e := _EMITTED.search(msg)) is not None:
            out.append(Event("emitted", e["entry"], at, m["level"], e["why"], e["id"],
                             bool(e["buffered"])))
        elif (s := _SKIPPED.search(msg)) is not None:
            out.append(Event("skipped", s["entry"], at, m["level"], s["why"]))
    return [ev for ev in out if entry is None or ev.entry == entry]


def emitted(text: str, entry: str | None = None) -> list[Event]:
    return [e for e in events(text, entry) if e.kind == "emitted"]


def skipped(text: str, entry: str | None = None) -> list[Event]:
    return [e for e in events(text, entry) if e.kind == "skipped"]
