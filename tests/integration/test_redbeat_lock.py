"""Only the holder of redbeat's lock publishes or writes the ledger.

SingletonRedBeatScheduler driven in the test process on real Redis (broker and
redbeat's store), with redbeat's own lock acquisition. A standby beat (started,
waiting for the lock) and a beat that lost the lock (paused past the lock's
timeout while another took over) still run ccs_beat's code: the first saves its
ledger when it stops, the second re-checks its buffered runs before redbeat
notices the lost lock. Neither may write or send anything.
"""

from __future__ import annotations

import contextlib
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import acquire_distributed_beat_lock, ensure_conf

from ccs_beat.contrib.redbeat import SingletonRedBeatScheduler, ledger_key
from tests.conftest import REDBEAT_DB

pytestmark = pytest.mark.timeout(120)




def save(app: Celery, name: str, option: Any, every: float = 0.5) -> None:
    from celery.schedules import schedule
    RedBeatSchedulerEntry(name, "tests.sleep", schedule(every), args=[1],
                          kwargs={"tag": name}, options={"singleton": option}, app=app).save()


def holding_the_lock(app: Celery) -> SingletonRedBeatScheduler:
    beat = SingletonRedBeatScheduler(app=app, lazy=False)
    acquire_distributed_beat_lock(SimpleNamespace(scheduler=beat))
    assert beat.lock is not None and beat.lock.owned()
    return beat


def tick_until(beat: SingletonRedBeatScheduler, predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out ticking"
        time.sleep(min(beat.tick(), 0.2))


def steal_the_lock(app: Celery, beat: SingletonRedBeatScheduler) -> Any:
    """Another beat takes the lock, as after this one paused past its timeout."""
    client = redis.Redis.from_url(REDBEAT_DB)
    client.delete(beat.lock_key)
    other = client.lock(beat.lock_key, timeout=30)
    assert other.acquire(blocking=False)
    return other


def standby_beside_a_live_beat(app: Celery, published: list[str]) -> tuple[Any, Any, bytes]:
    """A live beat that sent two entries, one of them then deleted, and a standby
    started after that: ``(live, standby, the ledger in Redis)``."""
    save(app, "long", True)
    save(app, "adhoc", True)
    live = holding_the_lock(app)
    tick_until(live, lambda: len(published) >= 2)   # both sent: both in the ledger
    live.sync()
    RedBeatSchedulerEntry.from_key(RedBeatSchedulerEntry.generate_key(app, "adhoc"),
                                   app=app).delete()
    before = redis.Redis.from_url(REDBEAT_DB).get(ledger_key(app))
    assert before is not None and b"adhoc" in before
    standby = SingletonRedBeatScheduler(app=app, lazy=False)   # waits for the lock
    return live, standby, before


def test_a_standby_that_never_held_the_lock_does_not_write_the_ledger(app, published):
    live, standby, before = standby_beside_a_live_beat(app, published)
    try:
        # it has something to save (it forgets 'adhoc' once that emission expires)
        standby.ccs_coordinator.ledger.forget(["long"], now=time.time() + 10**6)
        assert standby.ccs_coordinator.ledger.dirty
        standby.close()
        assert redis.Redis.from_url(REDBEAT_DB).get(ledger_key(app)) == before
    finally:
        live.close()


def test_a_standby_that_never_held_the_lock_publishes_nothing(app, published):
    live, standby, _ = standby_beside_a_live_beat(app, published)
    try:
        assert standby.apply_async(standby.ccs_entry("long")) is None
        assert len(published) == 2
    finally:
        standby.close()
        live.close()


def test_a_beat_that_lost_the_lock_does_not_send_its_buffered_run(app, published):
    # no worker: the first emission waits in the queue and blocks the next due
    # run through the ledger until it expires; that run is buffered
    save(app, "gc", {"overlap": "buffer_one", "expires": 1.0})
    beat = holding_the_lock(app)
    try:
        tick_until(beat, lambda: beat.ccs_coordinator.ledger.pending)
        assert len(published) == 1
        other = steal_the_lock(app, beat)
        time.sleep(1.2)   # the first emission expires: the buffered run is due to go

        with contextlib.suppress(Exception):   # redbeat then fails to extend the lock
            beat.tick()

        assert len(published) == 1
        assert beat.ccs_coordinator.ledger.pending   # still remembered, for whoever is in charge
        other.release()
    finally:
        beat.lock = None
        beat.close()


def test_a_buffered_run_of_an_entry_disabled_since_is_dropped_not_sent(app, published):
    save(app, "gc", {"overlap": "buffer_one", "expires": 1.0})
    beat = holding_the_lock(app)
    try:
        tick_until(beat, lambda: beat.ccs_coordinator.ledger.pending)
        entry = RedBeatSchedulerEntry.from_key(
            RedBeatSchedulerEntry.generate_key(app, "gc"), app=app)
        entry.enabled = False
        entry.save()
        time.sleep(1.2)   # the first emission expires: the buffered run would go now
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:   # several buffer polls
            time.sleep(min(beat.tick(), 0.2))
        assert len(published) == 1
        assert not beat.ccs_coordinator.ledger.pending
    finally:
        beat.close()


@pytest.mark.parametrize(("pending", "scheduled"), [
    ("ghost", False), (":ccs_beat:ledger", False), ("ghost", True)])
def test_a_pending_name_that_leads_to_no_readable_entry_is_dropped_not_fatal(
        app, published, pending, scheduled):
    # the ledger is data: its pending names choose which Redis key beat reads
    ensure_conf(app)
    client = redis.Redis.from_url(REDBEAT_DB)
    prefix = app.conf.redbeat_key_prefix
    client.set(prefix + "ghost", "not a redbeat hash")
    if scheduled:   # listed in redbeat's schedule, due in a year: only ccs_beat reads it
        client.zadd(app.redbeat_conf.schedule_key, {prefix + "ghost": time.time() + 3e7})
    client.set(ledger_key(app), json.dumps({"version": 1, "seq": 0, "entries": {},
                                            "pending": [pending]}))
    save(app, "gc", True, every=60.0)
    for attempt in range(2):   # and a restarted beat starts as well
        beat = holding_the_lock(app)
        try:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:   # past a buffer poll
                time.sleep(min(beat.tick(), 0.2))
            assert not beat.ccs_coordinator.ledger.pending, attempt
        finally:
            beat.close()


def test_a_store_error_while_sending_a_buffered_run_keeps_it_and_beat_running(
        app, published, monkeypatch):
    # Redis (or the database) away for a moment: the remembered run must
    # neither be dropped nor stop beat; it goes out once the store is back
    save(app, "gc", {"overlap": "buffer_one", "expires": 1.0})
    beat = holding_the_lock(app)
    try:
        tick_until(beat, lambda: beat.ccs_coordinator.ledger.pending)
        time.sleep(1.2)   # the blocking emission expires

        def unavailable(*args, **kwargs):
            raise redis.exceptions.ConnectionError("Redis is restarting")
        monkeypatch.setattr(beat, "reserve", unavailable)
        for _ in range(4):
            time.sleep(max(0.0, min(beat.tick(), 0.3)))
        assert beat.ccs_coordinator.ledger.pending and len(published) == 1
        monkeypatch.undo()
        tick_until(beat, lambda: len(published) == 2)
    finally:
        beat.close()
