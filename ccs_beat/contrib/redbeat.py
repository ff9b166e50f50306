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

import json
from collections.abc import Mapping
from typing import Any

from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, ensure_conf, get_redis
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..checks import CheckReport
from ..coordinator import Coordinator
from ..errors import ConfigurationError
from ..ledger import Ledger
from ..logs import get_logger
from ..scheduler import SingletonSchedulerMixin

logger = get_logger("ccs_beat")

#: suffix of the ledger's key after redbeat's key prefix
LEDGER_SUFFIX = ":ccs_beat:ledger"
#: suffix of the write-ahead journal's key (a list of JSON records)
JOURNAL_SUFFIX = ":ccs_beat:journal"


def ledger_key(app: Any) -> str:
    """The Redis key of the ledger for ``app`` (redbeat's prefix + suffix)."""
    return app.redbeat_conf.key_prefix + LEDGER_SUFFIX


def journal_key(app: Any) -> str:
    """The Redis key of the ledger's write-ahead journal for ``app``."""
    return app.redbeat_conf.key_prefix + JOURNAL_SUFFIX


def _json(raw: Any, what: str) -> Any:
    """Decoded JSON, or None with an ERROR: anyone who can write Redis can
    write anything there, JSON nested past the parser's limit included."""
    try:
        return json.loads(raw) if raw else None
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeDecodeError too
        logger.error("ccs_beat: %s in Redis is not usable JSON (%s); ignoring it", what,
                     type(exc).__name__)
        return None


#: the Redis type ccs_beat keeps under each of its keys
KEY_TYPES = {LEDGER_SUFFIX: "string", JOURNAL_SUFFIX: "list"}


def _wrong_type(client: Any, app: Any) -> ConfigurationError:
    """Name the key that holds another Redis type than ccs_beat keeps there."""
    found = []
    for suffix, wanted in KEY_TYPES.items():
        key = app.redbeat_conf.key_prefix + suffix
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in (wanted, "none"):
            found.append(f"{key} is a {kind}, where ccs_beat keeps a {wanted}")
    return ConfigurationError(
        "ccs_beat: " + ("; ".join(found) or "a ccs_beat key holds the wrong Redis type")
        + ". Another program writes under redbeat_key_prefix: give redbeat a prefix "
        "of its own (redbeat_key_prefix), or delete the key (redis-cli DEL <key>) if "
        "nothing else needs it; ccs_beat then starts with an empty ledger.")


def _raw(client: Any, *command: Any) -> Any:
    """A command's reply as bytes: redbeat's client decodes every reply, and
    one value that is not UTF-8 (anyone can write this Redis) would fail it."""
    return client.execute_command(*command, **{NEVER_DECODE: []})


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
    for raw in _raw(get_redis(app), "ZRANGE", app.redbeat_conf.schedule_key, 0, -1):
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


def read_ledger(app: Any) -> Ledger:
    """The ledger in Redis with its journal replayed (one atomic read).

    Raises :class:`ConfigurationError` naming the key when one of ccs_beat's
    keys holds another Redis type (something else writes there)."""
    client = get_redis(app)
    pipe = client.pipeline(transaction=True)
    pipe.get(ledger_key(app))
    pipe.lrange(journal_key(app), 0, -1)
    try:
        raw, journal = pipe.execute()
    except ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        raise _wrong_type(client, app) from exc
    except UnicodeDecodeError:
        # a value that is not UTF-8: read again as bytes (not atomic: this is
        # the damaged case), and set the bad values aside below
        raw = _raw(client, "GET", ledger_key(app))
        journal = _raw(client, "LRANGE", journal_key(app), 0, -1)
    ledger = Ledger.from_state(_json(raw, f"the ledger ({ledger_key(app)})"))
    replayed = ledger.replay(_json(r, f"a record of {journal_key(app)}") for r in journal)
    if replayed:
        logger.info("ccs_beat: recovered %d emission record(s) from %s", replayed,
                    journal_key(app))
    return ledger


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

    _ccs_ledger_fresh = False
    _ccs_journal_client: tuple[Any, str] | None = None
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
        except Exception as exc:  # noqa: BLE001 - see above
            logger.error("ccs_beat: cannot read redbeat entry %r (%r); dropping its "
                         "buffered run", name, exc)
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

    def _ccs_task_names(self) -> set[str] | None:
        # outside a tick (a buffered run is re-checked): read every task name
        return self._ccs_tick_tasks

    # -- ledger -------------------------------------------------------------------

    def ccs_load_ledger(self) -> Ledger:
        return read_ledger(self.app)   # the journal is replayed here

    def ccs_save_ledger(self, ledger: Ledger) -> None:
        pipe = get_redis(self.app).pipeline(transaction=True)
        pipe.set(ledger_key(self.app), json.dumps(ledger.to_state()))
        pipe.delete(journal_key(self.app))
        pipe.execute()

    def ccs_journal_append(self, record: dict[str, Any]) -> None:
        # once per emission: redbeat's get_redis() re-checks the app's
        # configuration on every call (about 0.5 ms), so keep the client and key
        if self._ccs_journal_client is None:
            self._ccs_journal_client = (get_redis(self.app), journal_key(self.app))
        client, key = self._ccs_journal_client
        client.rpush(key, json.dumps(record))

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
        ccs = self.ccs
        if ccs is not None and ccs.ledger.dirty:
            self._ccs_persist(ccs)
        super().close()

    # -- the redbeat path ----------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        ccs = self.ccs
        if ccs is not None and not self._ccs_ledger_fresh:
            # first tick with the lock: another beat may have emitted since we
            # read the ledger at start-up, while we waited for the lock
            ledger = self.ccs_load_ledger()
            ledger.forget(self.ccs_entry_names())
            ccs.ledger = ledger
            self._ccs_ledger_fresh = True
        self._ccs_tick_tasks = None
        try:
            return super().tick(*args, **kwargs)
        finally:
            self._ccs_tick_tasks = None

    def maybe_due(self, entry: Any, **kwargs: Any) -> Any:
        ccs = self.ccs
        if ccs is None:
            return super().maybe_due(entry, **kwargs)
        is_due, next_time_to_run = entry.is_due()
        if not is_due:
            return next_time_to_run
        verdict = ccs.judge(entry)
        if verdict.emit:
            return super().maybe_due(entry, **kwargs)
        ccs.skipped(entry, verdict)
        self.ccs_on_decision(entry, verdict, None)
        return self._ccs_advance(entry, next_time_to_run)

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
        except Exception as exc:  # noqa: BLE001 - Redis away for a moment must not stop beat
            logger.error("ccs_beat: could not move skipped entry %r to its next due time "
                         "(%r); it is decided again at the next tick", entry.name, exc)
            return next_time_to_run

    @property
    def info(self) -> str:
        return super().info + "\n       . ccs_beat -> singleton checks on (redbeat)"
