"""The ledger: what this beat emitted and may still be queued or running.

A cluster read shows what workers hold (active, reserved, scheduled). It cannot
show a message still waiting in the broker queue. Beat therefore remembers the
ids it sent, per entry, and looks them up by key: an entry is blocked by an
emission of its key whichever entry sent it. A sent id is *outstanding* until
one of:

* its result is ready (when a result backend can tell);
* it was seen on a worker and later that worker answered without it
  ("seen, then gone"), or that worker is presumed gone;
* its message expiry passed without it ever being seen (the worker would
  discard it as expired).

The ledger is plain data (:meth:`Ledger.to_state` / :meth:`Ledger.from_state`
give JSON-able dicts) so each scheduler persists it in its own store.

It is written *ahead* of each send: beat picks the task id itself, appends a
small journal record (:meth:`Ledger.note_sending`) to its store, and only then
publishes. The full state is saved at the end of the burst and the journal
emptied; a beat killed between the two replays the journal at start
(:meth:`Ledger.replay`), so it never forgets a message it may have sent.
Records carry a sequence number and the saved state the last number it
includes, so a record is applied once whatever order the two writes land in.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from .snapshot import SeenTask, Snapshot

#: most emissions remembered per entry; older ones are dropped first
MAX_PER_ENTRY = 32
STATE_VERSION = 1


class Status(enum.Enum):
    QUEUED = "queued"      # sent, never seen, not expired: probably waiting in the broker
    SEEN = "seen"          # visible on a worker right now
    UNKNOWN = "unknown"    # last seen on a worker that did not answer this read
    DONE = "done"          # finished, gone, or expired unseen


@dataclass
class Emission:
    task_id: str
    key: str
    sent_at: float
    expires_at: float | None = None
    seen_on: str | None = None
    seen_at: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Emission:
        """Raise ValueError, KeyError or TypeError for a damaged record (a
        400-digit or infinite time, an id that is not text: the store is data).
        A ``seen_on`` that is not a worker name is dropped: the emission then
        counts as queued until it expires, the cautious reading."""
        task_id, key = data["task_id"], data["key"]
        if not isinstance(task_id, str) or not isinstance(key, str):
            raise TypeError("task_id and key must be strings")
        seen_on = data.get("seen_on")
        seen_on = seen_on if isinstance(seen_on, str) else None
        return cls(task_id=task_id, key=key, sent_at=_seconds(data["sent_at"]),
                   expires_at=None if data.get("expires_at") is None
                   else _seconds(data["expires_at"]),
                   seen_on=seen_on,
                   seen_at=None if seen_on is None or data.get("seen_at") is None
                   else _seconds(data["seen_at"]))


#: sequence numbers beyond this are damage: the journal table's column is a
#: 64-bit integer, and a forged huge one would switch the journal off for good
MAX_SEQ = 2**62


#: a saved state's sequence number beyond this is damage too: far below MAX_SEQ,
#: so the journal records after a forged one near the limit still fit
MAX_SAVED_SEQ = 2**53


#: more journal records than any beat writes between two ledger saves
MAX_GAP = 2**40


def _sequence(value: Any) -> TypeGuard[int]:
    """True for a usable journal sequence number (a positive int below MAX_SEQ)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < MAX_SEQ


def _stale(emission: Emission, now: float) -> bool:
    """True once an emission cannot be waiting in a queue any more."""
    if emission.expires_at is not None:
        return now >= emission.expires_at
    return now - emission.sent_at > FORGET_AFTER


def _seconds(value: Any) -> float:
    """A finite clock reading, or ValueError."""
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{str(value)[:20]}... is out of range") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{seconds!r} is not a clock reading")
    return seconds


#: ``result_ready(task_id)`` -> True (ready), False (not ready), None (cannot tell)
ResultReady = Callable[[str], "bool | None"]


def assess(emission: Emission, snapshot: Snapshot | None, now: float,
           result_ready: ResultReady | None = None) -> tuple[Status, SeenTask | None]:
    """Classify one emission. Pure apart from calling ``result_ready``."""
    if result_ready is not None and result_ready(emission.task_id):
        return Status.DONE, None
    seen = snapshot.find(emission.task_id) if snapshot is not None else None
    if seen is not None:
        return Status.SEEN, seen
    if snapshot is not None and snapshot.done(emission.task_id):
        return Status.DONE, None          # a worker took it and let it go between reads
    if emission.seen_on is not None:
        if snapshot is None or snapshot.unreadable(emission.seen_on):
            return Status.UNKNOWN, None
        return Status.DONE, None          # seen, then gone (or its worker is gone)
    if emission.expires_at is not None and now >= emission.expires_at:
        return Status.DONE, None          # expired without ever being picked up
    return Status.QUEUED, None


#: how long a removed entry's emission without an expiry is still looked up
#: by its key (another entry of the same key, or the entry renamed, may follow)
FORGET_AFTER = 24 * 3600.0


class Ledger:
    """Outstanding emissions, kept per entry and looked up by key: an entry is
    blocked by any emission of its key, whichever entry sent it (two entries
    for one job, an entry renamed since), and the entries with a buffered run."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Emission]] = {}
        self.pending: set[str] = set()
        self.dirty = False
        #: sequence number of the last journal record this state includes
        self.seq = 0
        self._by_key: dict[str, set[str]] = {}   # key -> entries holding an emission of it

    def _set(self, entry: str, items: list[Emission]) -> None:
        """Replace ``entry``'s emissions, keeping the key index right."""
        before = {e.key for e in self.entries.get(entry, ())}
        if items:
            self.entries[entry] = items
        else:
            self.entries.pop(entry, None)
        after = {e.key for e in items}
        for key in before - after:
            holders = self._by_key.get(key, set())
            holders.discard(entry)
            if not holders:
                self._by_key.pop(key, None)
        for key in after:
            self._by_key.setdefault(key, set()).add(entry)

    def unseen(self) -> list[str]:
        """Ids of the emissions no read has seen yet: a cluster read asks the
        workers about them (one that ran between two reads is done)."""
        return sorted(e.task_id for items in self.entries.values() for e in items
                      if e.seen_on is None)

    def record(self, entry: str, emission: Emission) -> None:
        items = [*self.entries.get(entry, ()), emission]
        self._set(entry, items[-MAX_PER_ENTRY:])
        self.dirty = True

    # -- the journal (write-ahead records) ----------------------------------------

    def note_sending(self, entry: str, emission: Emission) -> dict[str, Any]:
        """Record an emission about to be published; return its journal record."""
        self.record(entry, emission)
        self.seq += 1
        return {"seq": self.seq, "entry": entry, "emission": asdict(emission)}

    def withdraw(self, entry: str, task_id: str) -> dict[str, Any]:
        """Forget an emission whose publish failed; return its journal record."""
        self._drop(entry, task_id)
        self.dirty = True
        self.seq += 1
        return {"seq": self.seq, "entry": entry, "withdraw": task_id}

    def _drop(self, entry: str, task_id: str) -> None:
        self._set(entry, [e for e in self.entries.get(entry, []) if e.task_id != task_id])

    def replay(self, records: Iterable[Any]) -> int:
        """Apply journal records newer than this state; return how many applied.

        A damaged record is skipped (it can only be one emission)."""
        applied = 0
        usable = [r for r in records if isinstance(r, dict) and _sequence(r.get("seq"))]
        for record in sorted(usable, key=lambda r: r["seq"]):
            if record["seq"] <= self.seq or record["seq"] - self.seq > MAX_GAP:
                continue   # already in the state; or a number no beat wrote since
            entry = record.get("entry")
            if not isinstance(entry, str):
                continue
            try:
                if "withdraw" in record:
                    self._drop(entry, str(record["withdraw"]))
                else:
                    emission = Emission.from_dict(record["emission"])
                    if all(e.task_id != emission.task_id
                           for e in self.entries.get(entry, [])):
                        self.record(entry, emission)
            except (KeyError, TypeError, ValueError, RecursionError):
                continue
            self.seq = record["seq"]
            self.dirty = True
            applied += 1
        return applied

    def outstanding(self, key: str, snapshot: Snapshot | None, now: float,
                    result_ready: ResultReady | None = None,
                    ) -> list[tuple[Emission, Status, SeenTask | None]]:
        """Assess the emissions of ``key`` (whichever entry sent them), forget
        the finished ones, return the rest."""
        out: list[tuple[Emission, Status, SeenTask | None]] = []
        for entry in sorted(self._by_key.get(key, ())):
            keep = []
            for emission in self.entries.get(entry, ()):
                if emission.key != key:
                    keep.append(emission)
                    continue
                status, seen = assess(emission, snapshot, now, result_ready)
                if status is Status.DONE:
                    self.dirty = True
                    continue
                if seen is not None and emission.seen_on != seen.worker:
                    emission.seen_on, emission.seen_at = seen.worker, now
                    self.dirty = True
                keep.append(emission)
                out.append((emission, status, seen))
            self._set(entry, keep)
        return out

    def set_pending(self, entry: str, pending: bool) -> None:
        if pending and entry not in self.pending:
            self.pending.add(entry)
            self.dirty = True
        elif not pending and entry in self.pending:
            self.pending.discard(entry)
            self.dirty = True

    def forget(self, keep_entries: Iterable[str], now: float | None = None) -> None:
        """Drop what entries no longer in the schedule left behind: their
        buffered runs, and their emissions once they cannot be waiting in a
        queue any more (expired, or sent over :data:`FORGET_AFTER` ago without
        an expiry) -- until then an entry of the same key, the entry renamed
        included, is still blocked by them."""
        now = time.time() if now is None else now
        keep = set(keep_entries)
        for name in [n for n in self.entries if n not in keep]:
            live = [e for e in self.entries[name] if not _stale(e, now)]
            if len(live) != len(self.entries[name]):
                self._set(name, live)
                self.dirty = True
        if self.pending - keep:
            self.pending &= keep
            self.dirty = True

    def to_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "seq": self.seq,
                "entries": {name: [asdict(e) for e in items]
                            for name, items in self.entries.items()},
                "pending": sorted(self.pending)}

    def _reindex(self) -> None:
        self._by_key = {}
        for entry, items in self.entries.items():
            for emission in items:
                self._by_key.setdefault(emission.key, set()).add(entry)

    @classmethod
    def from_state(cls, state: Any) -> Ledger:
        """Rebuild from :meth:`to_state` output; tolerate damage, losing only it."""
        ledger = cls()
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return ledger
        entries = state.get("entries")
        if isinstance(entries, dict):
            for name, items in entries.items():
                for item in items if isinstance(items, list) else ():
                    try:
                        ledger.entries.setdefault(str(name), []).append(
                            Emission.from_dict(item))
                    except (KeyError, TypeError, ValueError, RecursionError):
                        continue
        pending = state.get("pending")
        if isinstance(pending, list):
            ledger.pending = {p for p in pending if isinstance(p, str)}
        seq = state.get("seq")
        if _sequence(seq) and seq < MAX_SAVED_SEQ:
            ledger.seq = seq
        ledger._reindex()
        return ledger
