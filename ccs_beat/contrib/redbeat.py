"""celery-redbeat's ``RedBeatScheduler`` with singleton decisions.

::

    celery -A proj beat -S ccs_beat.contrib.redbeat:SingletonRedBeatScheduler

Entries say what they want under ``options["singleton"]``, in ``beat_schedule``
or in entries created at run time::

    RedBeatSchedulerEntry("gc", "blobs.collect_garbage", crontab(hour=3), app=app,
                          options={"singleton": {"overlap": "skip", "key": "name"}}).save()

How it fits redbeat:

* redbeat's ``tick()`` loads the due entries from Redis and calls
  ``maybe_due()`` for each; ccs_beat decides there, and all due entries of one
  tick share **one** cluster read, so a tick stays far inside
  ``redbeat_lock_timeout`` however many entries are due;
* a skipped run is advanced in Redis as redbeat advances a sent one (its
  ``last_run_at`` and score move to the next due time), but ``total_run_count``
  is not increased: it counts runs sent;
* the ledger (ids this beat sent that may still be queued or running) is kept
  in Redis under ``<redbeat_key_prefix>:ccs_beat:ledger``, next to redbeat's
  keys, and re-read when a beat acquires the lock, so the beat that takes over
  after a failover knows what the previous one emitted. Each emission is first
  pushed to the list ``<redbeat_key_prefix>:ccs_beat:journal`` (write-ahead),
  which the end-of-burst save empties in the same transaction;
* an entry whose ``singleton`` value is invalid is logged as an error naming
  it and sent without the check, like in ``SingletonScheduler``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, ensure_conf, get_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..checks import CheckReport
from ..coordinator import Coordinator
from ..errors import ConfigurationError
from ..events import BeatAction
from ..logs import get_logger
from ..scheduler import SingletonSchedulerMixin
from .redis_store import RedisLedgerStore, journal_key, ledger_key, raw_reply

__all__ = ["SingletonRedBeatScheduler", "check_entries", "journal_key", "ledger_key",
           "schedule_members"]

logger = get_logger("ccs_beat")


def _text(raw: Any) -> str | None:
    """``raw`` as text, or None if it is not UTF-8."""
    try:
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        return None


def schedule_members(app: Any, problems: list[str] | None = None) -> list[str]:
    """The keys in redbeat's schedule set; one that is not text is left out
    (named in ``problems``, else in an ERROR): stock redbeat never loads it."""
    members = []
    for raw in raw_reply(get_redis(app), "ZRANGE", app.redbeat_conf.schedule_key, 0, -1):
        key = _text(raw)
        if key is not None:
            members.append(key)
            continue
        problem = f"redbeat schedule member {raw!r:.80} cannot be read: it is not UTF-8 text"
        if problems is not None:
            problems.append(problem)
        else:
            logger.error("ccs_beat: %s; ignoring it", problem)
    return members


def check_entries(coordinator: Coordinator) -> CheckReport:
    """``celery ccs check`` for the entries in Redis, validated as beat
    validates them when they are due (a bad one is sent unchecked)."""
    app, report = coordinator.app, CheckReport()
    ensure_conf(app)
    prefix = app.redbeat_conf.key_prefix
    # raw bytes: redbeat's client decodes every reply, and one member that is
    # not UTF-8 would fail the whole read
    try:
        members = schedule_members(app, report.problems)
    except Exception as exc:  # noqa: BLE001 - Redis away: a finding, not a traceback
        report.problems.append(f"cannot read redbeat's entries in Redis: {exc!r}")
        return report
    for key in members:
        name = key[len(prefix):]
        try:
            entry = RedBeatSchedulerEntry.from_key(key, app=app)
            # one entry at a time, so one bad entry leaves the others' policies
            report.policies.update(coordinator.validate({name: entry}, check_transport=False))
        except ConfigurationError as exc:
            report.problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a damaged entry is a finding, not a crash
            report.problems.append(f"redbeat entry {name!r} ({key!r}) cannot be read: {exc!r}")
    return report


class SingletonRedBeatScheduler(SingletonSchedulerMixin, RedBeatScheduler):
    """``RedBeatScheduler`` that declines to emit while an identical task is
    queued or running. See the module docstring."""

    ccs_store = RedisLedgerStore
    #: ``celery ccs check`` validates the entries saved in Redis with it
    ccs_check_entries = staticmethod(check_entries)
    _ccs_ledger_fresh = False
    #: task names of the entries loaded by the current tick (None: outside a tick)
    _ccs_tick_tasks: set[str] | None = None

    # -- entries ----------------------------------------------------------------

    def ccs_entries_at_start(self) -> Mapping[str, Any]:
        """The ``beat_schedule`` entries: a bad one stops beat at start, as in
        SingletonScheduler. Entries saved at run time are checked when due (a
        bad one is logged and sent unchecked), so one cannot stop a restart."""
        entries = {}
        for name in self.app.redbeat_conf.schedule or {}:
            entry = self.ccs_entry(name)
            if entry is not None:
                entries[name] = entry
        return entries

    def ccs_entry_names(self) -> set[str]:
        prefix = self.app.redbeat_conf.key_prefix
        return {key[len(prefix):] for key in schedule_members(self.app)}

    def ccs_entry(self, name: str) -> Any:
        """The entry ``name`` from Redis, or None if it is gone or unreadable:
        the name comes from the ledger, which is data (a damaged entry must
        drop its buffered run, not stop beat)."""
        try:
            return self.Entry.from_key(self.Entry.generate_key(self.app, name), app=self.app)
        except KeyError:
            return None
        except (RedisConnectionError, RedisTimeoutError):
            raise   # Redis is away, the entry may be fine: the caller keeps the run
        except Exception as exc:
            logger.error("ccs_beat: cannot read redbeat entry %r (%r); dropping its "
                         "buffered run", name, exc, exc_info=True)
            return None

    @property
    def schedule(self) -> dict[str, Any]:
        # redbeat's tick() reads this once, then decides each entry in it: note
        # their task names first, so the tick's one cluster read covers them all
        entries = super().schedule
        # an entry's task is data: one that is not a name is named when decided
        self._ccs_tick_tasks = {entry.task for entry in entries.values()
                                if isinstance(entry.task, str)}
        return entries

    def ccs_task_names(self) -> set[str] | None:
        # outside a tick (a buffered run is re-checked): read every task name
        return self._ccs_tick_tasks

    # -- the lock ------------------------------------------------------------------

    def ccs_in_charge(self) -> bool:
        """Only the holder of redbeat's lock publishes or writes the ledger: a
        standby that never held it, or a beat that lost it (paused past
        ``redbeat_lock_timeout``), would send a duplicate or overwrite the live
        beat's ledger with its stale copy. One Redis GET per publish."""
        if not self.lock_key:
            return True   # redbeat's lock is switched off: the user runs one beat
        lock = self.lock
        if lock is None:
            return False
        try:
            return bool(lock.owned())
        except Exception as exc:  # noqa: BLE001 - cannot tell: act as a standby
            logger.warning("ccs_beat: cannot check redbeat's lock (%r); acting as a "
                           "standby until it can", exc)
            return False

    def close(self) -> None:
        # save while the lock is still held: redbeat's close() releases it
        # before the scheduler's final sync
        if self.ccs_coordinator is not None:
            self.ccs_coordinator.save_ledger()
        super().close()

    # -- the redbeat path ----------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        coordinator = self.ccs_coordinator
        if coordinator is not None and not self._ccs_ledger_fresh:
            # first tick with the lock: another beat may have emitted since we
            # read the ledger at start-up, while we waited for the lock
            coordinator.load_ledger(self.ccs_entry_names())
            self._ccs_ledger_fresh = True
        self._ccs_tick_tasks = None
        try:
            return super().tick(*args, **kwargs)
        finally:
            self._ccs_tick_tasks = None

    def maybe_due(self, entry: Any, **kwargs: Any) -> Any:
        if self.ccs_coordinator is None:
            return super().maybe_due(entry, **kwargs)
        is_due, next_time_to_run = entry.is_due()
        if not is_due:
            return next_time_to_run
        event = self.ccs_handle(entry, self._ccs_reserving_publisher(entry, kwargs))
        if event is not None and event.action is BeatAction.SKIP:
            return self._ccs_advance(entry, next_time_to_run)
        return next_time_to_run

    def _ccs_reserving_publisher(self, entry: Any, kwargs: Mapping[str, Any]) -> Any:
        """Reserve ``entry`` in Redis (its ``last_run_at`` and run count move,
        as redbeat's ``apply_async`` moves them), then publish the prepared copy."""
        publish = self.ccs_publisher(kwargs.get("producer"))

        def reserve_and_publish(sending: Any) -> Any:
            if kwargs.get("advance", True):
                self.reserve(entry)
            return publish(sending)
        return reserve_and_publish

    def _ccs_advance(self, entry: Any, next_time_to_run: float) -> float:
        """Move a skipped entry to its next due time in Redis, as a sent run
        would, without counting it as a run. Like redbeat's own failed send, a
        Redis error is logged and beat goes on: the entry stays due and is
        decided again at the next tick."""
        if not self.ccs_in_charge():
            return next_time_to_run
        try:
            advanced = entry._next_instance(only_update_last_run_at=True)
            return float(advanced.is_due()[1])
        except Exception as exc:
            logger.error("ccs_beat: could not move skipped entry %r to its next due time "
                         "(%r); it is decided again at the next tick", entry.name, exc,
                         exc_info=True)
            return next_time_to_run

    @property
    def info(self) -> str:
        return super().info + "\n       . ccs_beat -> singleton checks on (redbeat)"
