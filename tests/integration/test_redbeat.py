"""SingletonRedBeatScheduler with real processes: real ``celery beat`` on
celery-redbeat, real workers, real Redis (broker and redbeat's store).

Each test has its own redbeat key prefix (and so its own lock), queue and
control exchange; its keys are deleted at the end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
import redis

from tests.conftest import REDBEAT_DB
from tests.integration.harness import assert_no_overlap, wait_until

SCHEDULER = "ccs_beat.contrib.redbeat:SingletonRedBeatScheduler"


def start_workers(cluster, count=2, concurrency=2):
    for i in range(count):
        cluster.start_worker(f"w{i}", concurrency=concurrency, wait=False)
    cluster.wait_for_workers([cluster.hostname(f"w{i}") for i in range(count)])


def meta(cluster, name) -> dict:
    client = redis.Redis.from_url(REDBEAT_DB)
    raw = client.hget(cluster.settings["redbeat_key_prefix"] + name, "meta")
    return json.loads(raw) if raw else {}


def long_entry(cluster, seconds=3.0, option=True):
    return {"task": "tests.sleep", "schedule": 1.0, "args": [seconds],
            "kwargs": {"tag": "long"}, "options": {"queue": cluster.queue,
                                                   "singleton": option}}


def test_a_long_task_due_every_second_never_overlaps(redbeat_cluster):
    cluster = redbeat_cluster()
    cluster.schedule = {"long": long_entry(cluster)}
    start_workers(cluster)
    beat = cluster.start_beat(scheduler=SCHEDULER)

    wait_until(lambda: len(cluster.finished_runs("long")) >= 3, 45,
               what="three finished runs")
    assert_no_overlap(cluster.runs("long"))
    skips = beat.skipped("long")
    assert skips and skips[0].reason == "identical_in_cluster", skips[:1]

    # a skipped run advances the entry in Redis as redbeat does, without counting:
    # stop beat right after a skip, then read the entry's meta
    wait_until(lambda: beat.decisions("long")[-1].action == "skip", 20,
               what="a skip to be the last decision")
    cluster.stop(beat)
    events = beat.decisions("long")
    sent = [e for e in events if e.action == "emit"]
    state = meta(cluster, "long")
    assert state["total_run_count"] == len(sent), (state, len(sent))
    assert decode_time(state["last_run_at"]) >= events[-1].at - 0.5


def decode_time(value) -> float:
    """redbeat's JSON form of a datetime -> epoch seconds."""
    from redbeat.decoder import RedBeatJSONDecoder
    dt = json.loads(json.dumps(value), cls=RedBeatJSONDecoder)
    return dt.timestamp()


def save_entry(cluster, name, option, seconds=3.0):
    """Create an entry at run time, as an application would."""
    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry
    app = cluster.app
    app.conf.update(cluster.settings)
    options = {"queue": cluster.queue, "singleton": option}
    RedBeatSchedulerEntry(name, "tests.sleep", schedule(1.0), args=[seconds],
                          kwargs={"tag": name}, options=options, app=app).save()


def test_an_entry_added_at_run_time_with_singleton_is_honoured(redbeat_cluster):
    cluster = redbeat_cluster()
    start_workers(cluster)
    beat = cluster.start_beat(scheduler=SCHEDULER)
    save_entry(cluster, "added", {"overlap": "skip", "key": "name"})

    wait_until(lambda: len(cluster.finished_runs("added")) >= 3, 45,
               what="three finished runs of the entry added at run time")
    assert_no_overlap(cluster.runs("added"))
    skips = beat.skipped("added")
    assert skips and all(s.overlap == "skip" for s in skips), skips


def test_a_garbage_singleton_option_is_reported_naming_the_entry(redbeat_cluster):
    cluster = redbeat_cluster()
    start_workers(cluster, count=1)
    beat = cluster.start_beat(scheduler=SCHEDULER)
    save_entry(cluster, "garbage", {"overlap": "sometimes"}, seconds=0.2)
    save_entry(cluster, "fine", True, seconds=0.2)

    wait_until(lambda: "beat entry 'garbage'" in beat.text(), 20,
               what="an error naming the entry")
    assert "unknown overlap policy 'sometimes'" in beat.text()
    # beat keeps running, and nothing is lost: both entries still run
    wait_until(lambda: cluster.finished_runs("garbage") and cluster.finished_runs("fine"),
               30, what="both entries to run")
    assert beat.alive()
    # the bad entry is still in Redis: a restarted beat starts, and says so again
    cluster.stop(beat)
    again = cluster.start_beat("beat-again", scheduler=SCHEDULER)
    wait_until(lambda: "beat entry 'garbage'" in again.text(), 20,
               what="the restarted beat to name the entry")
    assert again.alive()


def test_a_bad_beat_schedule_option_stops_beat_at_start_naming_the_entry(redbeat_cluster):
    cluster = redbeat_cluster()
    cluster.schedule = {"nightly-gc": long_entry(cluster, option={"overlap": "sometimes"})}
    proc = cluster.run_beat_to_exit(scheduler=SCHEDULER)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "beat entry 'nightly-gc'" in out and "'sometimes'" in out, out[-3000:]


def test_the_beat_that_takes_over_the_lock_does_not_emit_a_duplicate(redbeat_cluster):
    # lock held for 3 s past the holder's last tick, so the standby takes over soon
    cluster = redbeat_cluster(redbeat_lock_timeout=3)
    cluster.schedule = {"long": long_entry(cluster, seconds=10.0)}
    start_workers(cluster)
    first = cluster.start_beat("beat-a", scheduler=SCHEDULER)
    wait_until(lambda: "beat: Acquired lock" in first.text(), 20, what="beat-a to lock")
    second = cluster.start_beat("beat-b", scheduler=SCHEDULER)

    # beat-a's emission is running on a worker: kill beat-a without warning
    wait_until(lambda: cluster.runs("long"), 30, what="the first run to start")
    first_run = cluster.runs("long")[0]
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(timeout=10)

    wait_until(lambda: "beat: Acquired lock" in second.text(), 30,
               what="beat-b to take the lock over")
    # while the first run goes on, beat-b decides and skips
    wait_until(lambda: second.skipped("long"), 20,
               what="beat-b to skip the running entry")
    first_skip = second.skipped("long")[0]
    assert first_skip.blocker and first_skip.blocker.task_id == first_run.id, first_skip
    assert not second.emitted("long") or \
        second.emitted("long")[0].at >= first_run.start + 10.0 - 0.5
    # once it has ended, beat-b emits the next run, and nothing overlapped
    wait_until(lambda: second.emitted("long"), 30,
               what="beat-b to emit after the first run ended")
    wait_until(lambda: len(cluster.runs("long")) >= 2, 30, what="the second run")
    assert_no_overlap(cluster.runs("long"))


def test_the_ledger_in_redis_hands_a_queued_emission_over_to_the_next_beat(redbeat_cluster):
    # no worker yet: beat-a's emission waits in the broker queue, where no
    # cluster read can see it; only the ledger in Redis knows about it
    cluster = redbeat_cluster(redbeat_lock_timeout=3)
    cluster.schedule = {"long": long_entry(cluster, seconds=2.0,
                                           option={"overlap": "skip", "expires": 60})}
    first = cluster.start_beat("beat-a", scheduler=SCHEDULER)
    wait_until(lambda: first.emitted("long"), 30, what="beat-a to emit")
    queued_id = first.emitted("long")[0].task_id
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(timeout=10)
    # the id is in Redis: in the ledger, or still in its write-ahead journal
    client = redis.Redis.from_url(REDBEAT_DB)
    prefix = cluster.settings["redbeat_key_prefix"]
    stored = [client.get(prefix + ":ccs_beat:ledger") or b"",
              *client.lrange(prefix + ":ccs_beat:journal", 0, -1)]
    assert any(queued_id.encode() in raw for raw in stored)

    second = cluster.start_beat("beat-b", scheduler=SCHEDULER)
    wait_until(lambda: second.skipped("long"), 30,
               what="beat-b to skip because of beat-a's queued emission")
    skip = second.skipped("long")[0]
    assert skip.reason == "previous_queued", skip
    assert skip.blocker and skip.blocker.task_id == queued_id, skip
    assert not second.emitted("long")
    # `celery ccs status` finds the same ledger in Redis
    status = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.integration.proj", "ccs", "status",
         "--json", "--timeout", "0.5", "--scheduler", SCHEDULER],
        cwd=cluster.dir, env=cluster.env(), capture_output=True, text=True, timeout=60)
    assert status.returncode == 3, status.stderr   # no worker yet: nobody answered
    report = json.loads(status.stdout)
    assert report["outcome"] == "no_worker"
    assert report["ledger_source"].startswith("redis ")
    assert [e["task_id"] for e in report["ledger"]] == [queued_id]

    # the worker runs beat-a's message first; nothing overlaps after
    start_workers(cluster, count=1)
    wait_until(lambda: len(cluster.finished_runs("long")) >= 2, 40, what="two runs")
    runs = cluster.runs("long")
    assert runs[0].id == queued_id
    assert_no_overlap(runs)


def test_one_tick_reads_the_cluster_once_however_many_entries_are_due(redbeat_cluster):
    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry

    from ccs_beat.contrib.redbeat import SingletonRedBeatScheduler

    cluster = redbeat_cluster(redbeat_lock_key=None)
    start_workers(cluster, count=1, concurrency=1)
    app = cluster.app
    app.conf.update(cluster.settings)
    last_run = app.now() - timedelta(hours=2)       # all due now
    for i in range(200):
        RedBeatSchedulerEntry(f"e{i}", "tests.sleep", schedule(3600.0), args=[0],
                              kwargs={"tag": f"e{i}"}, app=app, last_run_at=last_run,
                              options={"queue": cluster.queue, "singleton": True}).save()
    beat = SingletonRedBeatScheduler(app=app, max_interval=1)
    try:
        beat.tick()
        assert beat.ccs_coordinator.reader.reads == 1
        assert len(beat.ccs_coordinator.ledger.entries) == 200     # every due entry was emitted
        # the next tick finds nothing due: no read at all
        beat.tick()
        assert beat.ccs_coordinator.reader.reads == 1
    finally:
        beat.close()


def test_an_entry_key_naming_an_unregistered_function_is_never_imported(redbeat_cluster,
                                                                        import_probe):
    # whoever writes redbeat's Redis chooses the task, its arguments and the key
    # text: a dotted path there must not become code in the beat process
    import os

    from tests.integration.harness import REPO
    cluster = redbeat_cluster()
    start_workers(cluster, count=1)
    beat = cluster.start_beat(scheduler=SCHEDULER, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(import_probe.folder)]))
    save_entry(cluster, "planted", {"key": import_probe.path}, seconds=0.2)

    wait_until(lambda: "beat entry 'planted'" in beat.text(), 20,
               what="an error naming the entry")
    assert "ccs_beat_key_functions" in beat.text()
    wait_until(lambda: cluster.finished_runs("planted"), 30,
               what="the entry to run anyway (sent without the check)")
    assert beat.alive()
    assert not import_probe.marker.exists()


def test_a_buffered_run_counts_as_a_run_in_redis(redbeat_cluster):
    # due every 2 s, runs 3 s: every other due run is skipped and buffered, and
    # the buffered run goes out when the blocker ends
    cluster = redbeat_cluster()
    entry = long_entry(cluster, seconds=3.0, option={"overlap": "buffer_one", "key": "name"})
    cluster.schedule = {"long": {**entry, "schedule": 2.0}}
    start_workers(cluster, count=1)
    beat = cluster.start_beat(scheduler=SCHEDULER)

    wait_until(lambda: any(e.buffered for e in beat.emitted("long")), 30,
               what="a buffered run")
    cluster.stop(beat)
    sent = beat.emitted("long")
    state = meta(cluster, "long")
    assert state["total_run_count"] == len(sent), (state, len(sent))
    assert decode_time(state["last_run_at"]) >= sent[-1].at - 0.5
    assert_no_overlap(cluster.runs("long"))


@pytest.mark.parametrize(("suffix", "write"), [
    (":ccs_beat:ledger", lambda c, k: c.rpush(k, "x")),
    (":ccs_beat:ledger", lambda c, k: c.hset(k, "a", "b")),
    (":ccs_beat:journal", lambda c, k: c.set(k, "x")),
    (":ccs_beat:journal", lambda c, k: c.hset(k, "a", "b")),
], ids=["ledger-list", "ledger-hash", "journal-string", "journal-hash"])
def test_a_ccs_beat_key_of_the_wrong_redis_type_stops_beat_naming_the_key(redbeat_cluster,
                                                                          suffix, write):
    cluster = redbeat_cluster()
    cluster.schedule = {"long": long_entry(cluster)}
    key = cluster.settings["redbeat_key_prefix"] + suffix
    write(redis.Redis.from_url(REDBEAT_DB), key)

    proc = cluster.run_beat_to_exit(scheduler=SCHEDULER)

    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{key} is a " in out and "redbeat_key_prefix" in out, out[-3000:]


def test_an_entry_whose_args_are_not_a_list_is_named_and_beat_keeps_running(redbeat_cluster):
    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry
    cluster = redbeat_cluster()
    start_workers(cluster, count=1)
    beat = cluster.start_beat(scheduler=SCHEDULER)
    app = cluster.app
    app.conf.update(cluster.settings)
    RedBeatSchedulerEntry("odd", "tests.sleep", schedule(1.0), args=5, app=app,
                          options={"queue": cluster.queue,
                                   "singleton": {"key": "name"}}).save()
    save_entry(cluster, "fine", True, seconds=0.2)

    wait_until(lambda: "beat entry 'odd'" in beat.text(), 20, what="an error naming the entry")
    assert "args is 5" in beat.text()
    wait_until(lambda: len(cluster.finished_runs("fine")) >= 2, 30,
               what="the other entry to keep running")
    assert beat.alive()
    cluster.stop(beat)
    again = cluster.start_beat("beat-again", scheduler=SCHEDULER)   # a restart is not blocked
    wait_until(lambda: "beat entry 'odd'" in again.text(), 20, what="the restarted beat")
    assert again.alive()
