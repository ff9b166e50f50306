"""Beat entries as ccs_beat reads them: arguments, due time, expiry, a copy to send.

A beat entry is Celery's ``ScheduleEntry`` or a subclass (django-celery-beat's
``ModelEntry``, redbeat's entry); its fields may come from a database row or
Redis, so every reader here checks what it is given and names the entry when
something is wrong. No I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from celery.beat import BeatLazyFunc
from celery.utils.time import maybe_iso8601, maybe_make_aware

from .errors import UnkeyableError
from .logs import get_logger

logger = get_logger("ccs_beat")

#: the per-entry option ccs_beat reads (and removes before sending)
OPTION = "singleton"

#: "due, and next in more than this" is no next run: django-celery-beat's
#: clocked schedule says that (100,000,000 s) once its time has passed; a
#: schedule that is merely far off (a crontab on 29 February) is not due
NO_NEXT_RUN = 366 * 86400.0
#: how long the ledger counts an emission nobody saw, of an entry with no next run
LAST_RUN_HORIZON = 300.0


class BeatEntry(Protocol):
    """What ccs_beat reads of a beat entry (Celery's ``ScheduleEntry`` and
    the adapters' subclasses all have it)."""

    name: str
    task: Any        # a task name; a row or a Redis entry may hold anything
    args: Any
    kwargs: Any
    options: Any
    schedule: Any
    last_run_at: Any

    def default_now(self) -> datetime: ...


def describe_entry(name: str) -> str:
    return f"beat entry {name!r}"


def _lazy(value: Any) -> bool:
    return isinstance(value, BeatLazyFunc)


def _arguments(entry: BeatEntry) -> tuple[list[Any], dict[str, Any]]:
    """An entry's args and kwargs as a list and a dict, or raise naming the entry:
    a row or a Redis entry can hold ``5`` or ``[1]`` where they belong."""
    args, kwargs = entry.args or (), entry.kwargs or {}
    if not isinstance(args, (list, tuple)):
        raise UnkeyableError(f"{describe_entry(entry.name)}: args is {args!r:.60} "
                             f"(a {type(args).__name__}), not a list")
    if not isinstance(kwargs, Mapping):
        raise UnkeyableError(f"{describe_entry(entry.name)}: kwargs is {kwargs!r:.60} "
                             f"(a {type(kwargs).__name__}), not a dict")
    return list(args), dict(kwargs)


def entry_arguments(entry: BeatEntry) -> tuple[list[Any], dict[str, Any], bool]:
    """``(args, kwargs, had_lazy)`` of an entry, with BeatLazyFunc values called."""
    args, kwargs = _arguments(entry)
    had_lazy = any(map(_lazy, args)) or any(map(_lazy, kwargs.values()))
    if had_lazy:
        args = [a() if _lazy(a) else a for a in args]
        kwargs = {k: v() if _lazy(v) else v for k, v in kwargs.items()}
    return args, kwargs, had_lazy


def entry_arguments_unevaluated(entry: BeatEntry) -> tuple[list[Any], dict[str, Any], bool]:
    """Like :func:`entry_arguments` but never calls lazy values (used at load)."""
    args, kwargs = _arguments(entry)
    lazy = any(map(_lazy, args)) or any(map(_lazy, kwargs.values()))
    return args, kwargs, lazy


def due_since(entry: BeatEntry) -> float | None:
    """Wall-clock time at which a due entry became due (None: cannot tell)."""
    try:
        remaining = entry.schedule.remaining_estimate(entry.last_run_at)
        return time.time() + remaining.total_seconds()
    except Exception:  # noqa: BLE001 - exotic schedule: treat it as due just now
        return None


def enabled(entry: Any) -> bool:
    """False for an entry switched off (redbeat's ``enabled``, or the Django
    row's, which an expiry can switch off without a schedule reload)."""
    model = getattr(entry, "model", None)
    return getattr(entry, "enabled", True) is not False and \
        getattr(model, "enabled", True) is not False


def runs_no_more(entry: BeatEntry) -> bool:
    """True when the entry's schedule has no next run (a clocked one-off)."""
    try:
        due, next_in = entry.schedule.is_due(entry.default_now())
        return bool(due) and float(next_in) > NO_NEXT_RUN
    except Exception:  # noqa: BLE001 - exotic schedule: cannot tell
        return False


def _own_expiry(name: str, own: Any) -> Any:
    """An entry's own ``expires`` as seconds or a datetime. Celery also takes
    an ISO 8601 string; anything else is named at WARNING and the default
    expiry used, never silently replaced."""
    if not isinstance(own, str):
        return own
    try:
        return maybe_iso8601(own)
    except (TypeError, ValueError):
        logger.warning("ccs_beat: %s: expires %r is neither seconds nor an ISO 8601 time; "
                       "sending it with the default expiry", describe_entry(name), own[:80])
        return None


def expiry(entry: BeatEntry, fixed: float | None, options: Mapping[str, Any], now: float,
           timezone: Any, since: float | None = None) -> float | None:
    """Seconds until the message expires: ``fixed`` (the policy's), the
    entry's own ``expires`` option, or (default) until the entry's next run,
    less a margin, so an old message is gone before the next one is sent. The
    next run is counted from ``since`` (when beat took this run up), not from
    the send: a slow cluster read must not make the message outlive the next
    due time. None, with a WARNING, when the schedule cannot say when it runs
    next or gives no time at all to its next run."""
    if fixed is not None:
        return fixed
    own = _own_expiry(entry.name, options.get("expires"))
    if isinstance(own, datetime):
        # a naive time is in the app's zone, as Celery reads it
        return max(0.0, maybe_make_aware(own, timezone).timestamp() - now)
    if isinstance(own, (int, float)) and not isinstance(own, bool):
        return float(own)
    return _until_next_run(entry, now, since)


def _until_next_run(entry: BeatEntry, now: float, since: float | None) -> float | None:
    """The default expiry: the next run, counted from ``since``, less a margin."""
    try:
        taken_up = entry.default_now()
        if since is not None and now > since:
            taken_up -= timedelta(seconds=now - since)
        due, next_in = entry.schedule.is_due(taken_up)
        next_in = float(next_in)
    except Exception:  # noqa: BLE001 - exotic schedule: no default expiry
        logger.warning("ccs_beat: cannot tell when %s runs next; sending it without "
                       "an expiry", describe_entry(entry.name))
        return None
    if due and next_in > NO_NEXT_RUN:
        logger.info("ccs_beat: %s has no next run (a one-off); sending it without an "
                    "expiry", describe_entry(entry.name))
        return None
    if next_in <= 0:
        logger.warning("ccs_beat: %s is due again already; sending it without an "
                       "expiry", describe_entry(entry.name))
        return None
    # due again already (the read took longer than the period): the schedule
    # then counts to the run after, which this message must not outlive either
    return max(next_in - min(1.0, next_in * 0.1), 0.05)


#: attribute that marks an entry copy whose options are final (decided, stamped)
PREPARED = "_ccs_prepared"


def copy_with(entry: Any, options: dict[str, Any]) -> Any:
    """A shallow copy of ``entry`` with ``options``, marked prepared: one that
    works for any entry class (``ScheduleEntry.__reduce__``, which copy.copy
    would use, does not fit subclasses such as ModelEntry)."""
    sending = object.__new__(type(entry))
    sending.__dict__.update(entry.__dict__)
    sending.options = options
    sending.__dict__[PREPARED] = True
    return sending


def is_prepared(entry: Any) -> bool:
    """True for a copy made by :func:`copy_with`: decided, its options final."""
    return getattr(entry, "__dict__", {}).get(PREPARED) is True
