"""A standby redbeat beat re-reads ccs_beat's ledger when it takes the lock.

Promise (README "celery-redbeat", docs/redbeat.md "Keys in Redis": the ledger
is "read again, with the journal replayed, by a beat when it gets the lock";
``SingletonRedBeatScheduler.tick`` / ``_ccs_ledger_fresh``): a standby that
started -- and read the ledger -- *before* the live beat emitted must, once it
holds the lock, know the live beat's emission that still waits in the broker
queue, and skip instead of sending a duplicate. No worker runs, so no cluster
read can see that emission: only the ledger in Redis knows it.

(test_redbeat.py's failover tests start the standby after the emission, so its
start-up read already holds it; these start it before.)
"""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.schedules import schedule
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import acquire_distributed_beat_lock

from ccs_beat.contrib.redbeat import SingletonRedBeatScheduler
from ccs_beat.signals import entry_emitted, entry_skipped
from tests.conftest import REDBEAT_DB
from tests.integration.harness import wait_until

pytestmark = pytest.mark.timeout(120)

SCHEDULER = "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler"
#: the emission stays outstanding (queued, unseen) far longer than the test
OPTION = {"overlap": "skip", "expires": 60}


# -- real ``celery beat`` processes ---------------------------------------------------------


def save_entry(cluster, name: str) -> None:
    """Create an entry at run time, as an application would."""
    app = cluster.app
    app.conf.update(cluster.settings)
    RedBeatSchedulerEntry(name, "tests.sleep", schedule(1.0), args=[0.5],
                          kwargs={"tag": name}, app=app,
                          options={"queue": cluster.queue, "singleton": OPTION}).save()


def test_a_standby_that_read_the_ledger_before_the_live_beat_emitted_skips_after_failover(
        redbeat_cluster):
    """Two real beats: beat-b starts (reading an empty ledger) while beat-a
    holds the lock; only then is the entry created and emitted by beat-a, with
    no worker to take it. beat-a is killed; beat-b takes the lock and must
    skip because of beat-a's queued emission."""
    cluster = redbeat_cluster(redbeat_lock_timeout=3)
    first = cluster.start_beat("beat-a", scheduler=SCHEDULER)
    wait_until(lambda: "beat: Acquired lock" in first.text(), 20, what="beat-a to lock")
    # start_beat returns once beat-b logged ccs_beat's start-up line, which
    # follows its read of the ledger: that read is over, and found nothing
    second = cluster.start_beat("beat-b", scheduler=SCHEDULER)
    assert "Acquired lock" not in second.text()

    save_entry(cluster, "long")
    wait_until(lambda: first.emitted("long"), 30, what="beat-a to emit")
    queued_id = first.emitted("long")[0].task_id
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(timeout=10)

    wait_until(lambda: "beat: Acquired lock" in second.text(), 30,
               what="beat-b to take the lock over")
    wait_until(lambda: second.decisions("long"), 20,
               what="beat-b to decide the entry")
    time.sleep(1.5)   # a few more due times
    cluster.stop(second)

    sent = second.emitted("long")
    assert not sent, (f"beat-b sent {[e.task_id for e in sent]} although beat-a's "
                      f"{queued_id} was still queued: {sent[0].reason} ({sent[0].detail})")
    skips = second.skipped("long")
    assert skips and all(s.blocker and s.blocker.task_id == queued_id for s in skips), skips
    assert skips[0].reason == "previous_queued", skips[0]
    assert len(first.emitted("long")) == 1


# -- the scheduler class in this process, with redbeat's own lock --------------------------




def take_the_lock(beat: SingletonRedBeatScheduler) -> None:
    """What ``celery beat`` does at start (redbeat's beat_init handler): block
    until the lock is free, then hold it."""
    acquire_distributed_beat_lock(SimpleNamespace(scheduler=beat))
    assert beat.lock is not None and beat.lock.owned()


def tick_until(beat: SingletonRedBeatScheduler, predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out ticking"
        time.sleep(min(beat.tick(), 0.2))


def test_a_standby_created_before_the_emission_reloads_the_ledger_when_it_gets_the_lock(
        app, published):
    """The same failover, tick by tick: the standby is created (and reads the
    ledger) before the live beat emits; the live beat then dies holding the
    lock, and its lock expires; the standby takes the lock, and its first
    decision is a skip blamed on the live beat's queued emission."""
    RedBeatSchedulerEntry("gc", "tests.sleep", schedule(0.5), args=[1], kwargs={"tag": "gc"},
                          options={"singleton": OPTION}, app=app).save()
    live = SingletonRedBeatScheduler(app=app, lazy=False)
    take_the_lock(live)
    standby = SingletonRedBeatScheduler(app=app, lazy=False)   # would wait for the lock
    decisions: list[tuple[str, Any]] = []

    def on_skip(sender=None, decision=None, **_: Any) -> None:
        if sender is standby:
            decisions.append(("skipped", decision))

    def on_emit(sender=None, task_id=None, **_: Any) -> None:
        if sender is standby:
            decisions.append(("emitted", task_id))
    entry_skipped.connect(on_skip, weak=False)
    entry_emitted.connect(on_emit, weak=False)
    try:
        assert not standby.ccs_coordinator.ledger.entries           # its start-up read: nothing yet
        tick_until(live, lambda: published)
        (queued_id,) = published
        # the live beat dies holding the lock: nothing more from it, and its
        # lock expires (redbeat_lock_timeout)
        redis.Redis.from_url(REDBEAT_DB).delete(live.lock_key)
        live.lock = None

        take_the_lock(standby)
        tick_until(standby, lambda: len(decisions) >= 3)

        assert published == [queued_id], "the standby sent a duplicate"
        kinds = [kind for kind, _ in decisions]
        assert kinds == ["skipped"] * len(kinds), decisions
        first = decisions[0][1]
        assert first.blocker.task_id == queued_id and first.blocker.state == "queued", first
        assert [e.task_id for e in standby.ccs_coordinator.ledger.entries["gc"]] == [queued_id]
    finally:
        entry_skipped.disconnect(on_skip)
        entry_emitted.disconnect(on_emit)
        standby.close()
        live.close()
