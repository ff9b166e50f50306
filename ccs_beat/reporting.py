"""Where a decision event goes: the log, the signals, the event file.

One call per decision (:func:`report`) so that the three can never disagree:
the log record carries the event as ``extra["ccs_event"]`` (a dict, for JSON
log formatters), :data:`ccs_beat.signals.decision_made` carries it to
handlers in the process, and, with ``ccs_beat_event_log`` set, one JSON line
is appended to that file. Appending is one ``write()`` of one line to a file
opened in append mode, so beat and the workers of one host can share a file;
a file that cannot be written is named once at WARNING and then left alone
(a decision must never fail on its report).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import signals
from .events import DecisionEvent

_WARNED: set[str] = set()


def report(logger: logging.Logger, level: int, event: DecisionEvent, message: str,
           *args: Any, sender: Any = None, event_log: str | None = None) -> None:
    """Log ``message % args`` with ``event`` attached, signal it, and append it
    to ``event_log`` if set."""
    if logger.isEnabledFor(level):
        # stacklevel: the record names the decision's caller, not this function
        logger.log(level, message, *args, extra={"ccs_event": event.as_dict()}, stacklevel=2)
    if event_log:   # before the receivers, whatever they do
        append(event_log, event, logger)
    signals.decision_made.send(sender=sender, event=event)


def append(path: str, event: DecisionEvent, logger: logging.Logger) -> None:
    """One JSON line for ``event`` at the end of ``path``."""
    line = json.dumps(event.as_dict(), default=str) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError as exc:
        if path not in _WARNED:
            _WARNED.add(path)
            logger.warning("ccs_beat: cannot append decision events to %s (%r); "
                           "going on without it", path, exc)


def read_events(path: str | Path) -> Iterator[DecisionEvent]:
    """The events of an event file, oldest first; a torn or foreign line
    (a process killed while writing it) is skipped."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:   # another program may share the file: a line is data
            yield DecisionEvent.from_dict(json.loads(line.decode("utf-8")))
        except (ValueError, TypeError, RecursionError):   # UnicodeDecodeError too
            continue
