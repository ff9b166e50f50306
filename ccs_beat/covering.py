"""Runs that covered waiting requests, remembered by their worker.

Three identical guarded tasks sent together to workers whose slots are busy:
one starts at once and runs; a second waits in a worker's reserved list and
starts only when a slot frees -- possibly after the first body has *ended*.
Its read then finds nothing running, and the request runs a second time,
although a body that began after it was sent has just served it.

So when a guard decides to run, the identical requests its read saw waiting
(reserved, on any worker) are *covered*: each was sent before that read, and
the body starts after it. The guard records them here before its body starts;
its worker's ``ccs_snapshot`` replies report the record while the body runs
and for :data:`REMEMBER_FOR` seconds after it returned, and a covered request
that starts later steps aside for that run (``ccs_beat.guard.decide``). No
clock of another host is compared with anything: the order comes from one
read.

A body that never returned (its pool process was killed), or that asked for a
retry, covers nothing: its record is dropped, and the waiting copies run or
step aside by the rule alone. The copies a run covers are those it saw
waiting (reserved) or still deciding (active, younger than ``D + T +
margin``): all were sent before its read.

A record is a small JSON file in the main process's folder of marks (see
:mod:`ccs_beat.skipping`), written by the pool process.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from . import skipping
from .judging import KEEP_FOR, REMEMBER_FOR

#: at most this many ended records are kept (the oldest go first), but none
#: younger than KEEP_FOR
MAX_RECORDS = 1000
#: at most this many covered ids per record
MAX_IDS = 100

RUNNING, ENDED = ".cover", ".ended"


def record(task_id: str, name: str, covered: Iterable[str],
           sent: Mapping[str, list[float]] | None = None) -> None:
    """This pool process's ``task_id`` runs now; ``covered`` waited at its
    read (``sent``: their stamped send times, where they had one)."""
    folder, ids = skipping.folder(), sorted(set(covered))[:MAX_IDS]
    if folder is None or not ids:
        return
    data = json.dumps({"by": task_id, "name": name, "ids": ids,
                       "sent": {i: t for i, t in (sent or {}).items() if i in ids}})
    path = os.path.join(folder, skipping.stem(task_id, os.getpid()))
    # a record is a courtesy to later copies, never fatal
    with contextlib.suppress(OSError):
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(path + ".tmp", path + RUNNING)


def ended(task_id: str) -> None:
    """The body of this pool process's ``task_id`` returned (or raised)."""
    folder = skipping.folder()
    if folder is None:
        return
    path = os.path.join(folder, skipping.stem(task_id, os.getpid()))
    with contextlib.suppress(OSError):
        os.utime(path + RUNNING)      # the age counts from now, before anyone sees ENDED
        os.replace(path + RUNNING, path + ENDED)


def dropped(task_id: str) -> None:
    """The body of this pool process's ``task_id`` asked for a retry (or to
    be requeued): it served nobody yet, and the copies it covered must run
    or step aside by the rule alone."""
    folder = skipping.folder()
    if folder is not None:
        _remove(os.path.join(folder, skipping.stem(task_id, os.getpid())) + RUNNING)


def reported(active: Iterable[tuple[str, int | None]], names: set[str] | None,
             now: float | None = None) -> list[dict[str, Any]]:
    """The records a reply carries: those of runs still active, and of runs
    that ended within :data:`REMEMBER_FOR`. Records of runs that vanished
    without ending, and old ones, are removed."""
    folder = skipping.folder()
    if folder is None:
        return []
    now = time.time() if now is None else now
    try:
        files = [f for f in os.listdir(folder) if f.endswith((RUNNING, ENDED))]
    except OSError:
        return []
    alive = {skipping.stem(task_id, pid) for task_id, pid in active if pid is not None}
    out, ended_files = [], []
    for name in files:
        path = os.path.join(folder, name)
        stem, suffix = os.path.splitext(name)
        age = _age(path, now) if suffix == ENDED else None
        if suffix == ENDED and age is None:
            continue        # removed meanwhile
        if (suffix == RUNNING and stem not in alive) or (age is not None and age > REMEMBER_FOR):
            _remove(path)
            continue
        if age is not None:
            ended_files.append((age, path))
        item = _load(path, age, names)
        if item is not None:
            out.append(item)
    for age, path in sorted(ended_files)[MAX_RECORDS:]:
        if age > KEEP_FOR:
            _remove(path)
    return out


def _age(path: str, now: float) -> float | None:
    try:
        return now - os.stat(path).st_mtime
    except OSError:
        return None


def _load(path: str, age: float | None, names: set[str] | None) -> dict[str, Any] | None:
    """A record as a reply carries it; ``age``: seconds since its run ended
    (None: still running)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (names is not None and data.get("name") not in names):
        return None
    data["ended"] = age is not None
    if age is not None:
        data["age"] = round(max(age, 0.0), 3)
    return data


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
