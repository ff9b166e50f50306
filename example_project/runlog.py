"""Record when each task body starts and ends, one JSON object a line.

The demo reads ``runs.jsonl`` to draw the timeline and to *measure* overlaps
from the recorded intervals, rather than trusting what beat or the guard say
about themselves. Each record is one short ``write`` to a file opened in
append mode, so lines from several worker processes do not interleave.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings


def record(event: str, task: Any, **fields: Any) -> None:
    """Append one ``start``/``end`` record for the running ``task``."""
    request = task.request
    line = json.dumps({"event": event, "task": task.name, "id": request.id,
                       "worker": request.hostname, "pid": os.getpid(), "t": time.time(),
                       **fields})
    with open(settings.DEMO_RUNS_FILE, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


@contextmanager
def body(task: Any, **start_fields: Any) -> Iterator[dict[str, Any]]:
    """Record the start and the end of a task body.

    The caller fills the yielded dict with what the run did (rows updated,
    objects deleted); it is written with the ``end`` record. A body that
    raises is recorded as ended too, with the error, so the demo never counts
    a failed run as still running.
    """
    started = time.monotonic()
    record("start", task, **start_fields)
    result: dict[str, Any] = {}
    try:
        yield result
    except BaseException as exc:
        record("end", task, ok=False, error=repr(exc),
               duration=time.monotonic() - started, **result)
        raise
    record("end", task, ok=True, duration=time.monotonic() - started, **result)
