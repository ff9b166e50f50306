"""Marks of guarded copies that decided to step aside, for their worker's replies
(and marks of beat emissions whose body finished, for :mod:`ccs_beat.control`).

A copy that skips stays on its worker's active list until its body returns:
it records the ``SKIPPED`` state (a result backend can be slow) and runs the
``duplicate_skipped`` receivers (which can be slower) first. Other guards
take any copy still active after ``D + T + margin`` for one that chose to run,
so a skipper that lingers would make a later duplicate step aside for a copy
that is not running -- and that request would never run. So a copy marks
itself the moment it decides to skip, and its worker's ``ccs_snapshot`` reply
leaves marked requests out.

The decision is made in a pool process; the reply is built in the worker's
main process. A mark is an empty file in a folder of the main process (named
by its pid, found by pool processes through the module state they inherit
when forked): one ``listdir`` per reply, one small file per skip. A mark names
the task id and the pool process, so that a redelivered copy skipping beside
its original (same id, another process) does not hide the original.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile

#: the main worker process's folder of marks; None outside a worker
_folder: str | None = None


def start(pid: int | None = None) -> None:
    """In the worker's main process, before the pool starts: a clean folder."""
    global _folder
    folder = os.path.join(tempfile.gettempdir(), f"ccs_beat-{os.getuid()}",
                          f"skipping-{os.getpid() if pid is None else pid}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
    _folder = folder


def folder() -> str | None:
    """The main worker process's folder (None outside a worker); the records
    of :mod:`ccs_beat.covering` live there too, under their own suffix."""
    return _folder


def stem(task_id: str, pid: int) -> str:
    """A file name for a request in the folder: its id hashed (an id can
    hold any character), and the pool process."""
    return f"{hashlib.sha256(task_id.encode('utf-8', 'replace')).hexdigest()[:32]}.{pid}"


def mark(task_id: str) -> None:
    """This pool process's copy of ``task_id`` decided to step aside."""
    if _folder is None:
        return
    # a mark is a courtesy to peers, never fatal
    with contextlib.suppress(OSError), \
            open(os.path.join(_folder, stem(task_id, os.getpid())), "w"):
        pass


def mark_finished(task_id: str) -> None:
    """A pool process ran beat emission ``task_id``'s body to its end."""
    if _folder is None:
        return
    with contextlib.suppress(OSError), \
            open(os.path.join(_folder, stem(task_id, 0) + ".finished"), "w"):
        pass


def finished(task_id: str) -> bool:
    """True if a pool process of this worker marked ``task_id`` finished."""
    return _folder is not None and os.path.exists(
        os.path.join(_folder, stem(task_id, 0) + ".finished"))


def forget_finished(task_id: str) -> None:
    if _folder is not None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(_folder, stem(task_id, 0) + ".finished"))


def marked(active: list[tuple[str, int | None]]) -> set[tuple[str, int | None]]:
    """Which of ``active`` (task id, pool process) are marked; marks of requests
    no longer active are removed."""
    if _folder is None:
        return set()
    try:
        present = set(os.listdir(_folder))
    except OSError:
        return set()
    if not present:
        return set()
    present = {name for name in present if "." in name and name.rsplit(".", 1)[1].isdigit()}
    found: set[tuple[str, int | None]] = {(task_id, pid) for task_id, pid in active
             if pid is not None and stem(task_id, pid) in present}
    for stale in present - {stem(task_id, pid) for task_id, pid in found if pid is not None}:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(_folder, stale))
    return found
