"""Promises of beat's documentation, pinned with real processes.

* README "Guarantees", docs/how-it-works.md §3: a result backend ends an
  emission early -- a finished emission is no longer outstanding even though
  its expiry has not passed and no cluster read ever saw it running.
* docs/how-it-works.md §2: a worker's ``ccs_snapshot`` reply holds its
  *reserved* (prefetched) and *scheduled* (ETA/countdown) requests, with the
  sender's stamp, next to the active ones.
* README "Guarantees", docs/how-it-works.md §6: ``buffer_one`` remembers one
  missed run however many due times a blocker outlasts, and sends exactly one
  follow-up when the blocker ends -- never two.

Real ``celery worker`` / ``celery beat`` processes (tests/integration/harness.py)
on real brokers; task bodies record their own start and end, beat's decisions
are read back from its decision events (``Proc.decisions``).
"""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

from ccs_beat.cluster import ClusterReader
from ccs_beat.control import STAMP_HEADER, make_stamp
from ccs_beat.events import DecisionEvent
from ccs_beat.reporting import read_events
from tests.conftest import require_broker
from tests.integration.harness import Cluster, assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(120)


def entry(seconds: float, tag: str, every: float, singleton) -> dict:
    return {"task": "tests.sleep", "schedule": every, "args": [seconds],
            "kwargs": {"tag": tag}, "options": {"singleton": singleton}}


# -- 1. the result backend ends an emission early ---------------------------------------


def test_a_finished_emission_stops_blocking_before_its_expiry_with_a_result_backend(tmp_path):
    """Promise: with a result backend, an emission whose result is ready is no
    longer outstanding in beat's ledger (``Coordinator._result_ready``), even
    though its message expiry (60 s here) has not passed and no cluster read
    saw it running. A 0.1 s task due every second runs between two reads, so
    without that path every due run would be skipped for 60 s as "previous
    emission not picked up by any worker yet"; with it, beat emits about once
    per period."""
    redis_url = require_broker("redis")
    cluster = Cluster(redis_url, tmp_path, backend=redis_url, schedule={
        "quick": entry(0.1, "quick", every=1.0, singleton={"expires": 60})})
    try:
        cluster.start_worker("w1")
        beat = cluster.start_beat()

        def stale_skips() -> list[tuple[DecisionEvent, str]]:
            """Skips blamed on an emission whose body had already finished."""
            ended = {r.id: r.end for r in cluster.finished_runs("quick")}
            found = []
            for skip in beat.skipped("quick"):
                task_id = skip.blocker.task_id if skip.blocker else None
                if task_id in ended and ended[task_id] < skip.at - 0.3:
                    found.append((skip, task_id))
            return found

        wait_until(lambda: len(beat.emitted("quick")) >= 6 or stale_skips(),
                   30, what="six emissions (or a skip blamed on a finished run)")
        cluster.stop(beat)

        stale = stale_skips()
        assert not stale, (
            "beat skipped because of an emission that had already finished (its result "
            "was ready in the backend): "
            + "; ".join(f"{s.reason} ({s.detail}) [run {i} had ended]" for s, i in stale[:3]))
        emitted = beat.emitted("quick")
        assert len(emitted) >= 6, [(e.action, e.reason) for e in beat.decisions("quick")]
        # about once per period: after the first (slow) read, no gap of two periods
        gaps = [b.at - a.at for a, b in itertools.pairwise(emitted[1:])]
        assert max(gaps) < 2.5, gaps
        # every emission ran, and the ledger is what let the next one go: the
        # previous run had finished before each later emission
        wait_until(lambda: {e.task_id for e in emitted} <= {r.id for r in
                                                           cluster.finished_runs("quick")},
                   10, what="every emission to have run")
        ends = {r.id: r.end for r in cluster.finished_runs("quick")}
        for before, after in itertools.pairwise(emitted):
            assert ends[before.task_id] <= after.at, (before, after)
        # and each was sent with the 60 s expiry, far from over when the next went
        expiries = [e.expires_in for e in emitted]
        assert all(x is not None and x > 55 for x in expiries), expiries
    finally:
        forget_results(cluster)
        cluster.close()


def forget_results(cluster: Cluster) -> None:
    """Delete the results the emissions left in the backend (result_expires is off)."""
    from celery.result import AsyncResult
    for event in read_events(cluster.dir / "beat.events.jsonl"):
        if event.action == "emit" and event.task_id:
            AsyncResult(event.task_id, app=cluster.app).forget()


# -- 2. reserved and scheduled requests are in the reply ----------------------------------


@pytest.mark.parametrize("transport", ["redis", "amqp"])
def test_a_workers_snapshot_reports_its_active_reserved_and_scheduled_tasks_with_stamps(
        tmp_path, transport):
    """Promise: a worker answers ``ccs_snapshot`` with its active, reserved
    (prefetched) and scheduled (ETA/countdown) requests, each with the
    sender's stamp. One prefork worker with one process and a prefetch window:
    a long task runs (active), another waits prefetched behind it (reserved),
    a third was sent with a countdown (scheduled)."""
    url = require_broker(transport)
    cluster = Cluster(url, tmp_path, settings={"worker_prefetch_multiplier": 4})
    reader = ClusterReader(cluster.app, timeout=2.0)
    try:
        worker = cluster.hostname("w1")
        cluster.start_worker("w1", concurrency=1)
        stamps = {state: make_stamp(f"tests.sleep:{state}-{uuid.uuid4().hex[:6]}",
                                    entry=f"entry-{state}") for state in
                  ("active", "reserved", "scheduled")}

        def send(seconds: float, state: str, **options) -> str:
            return cluster.app.send_task(
                "tests.sleep", args=[seconds], kwargs={"tag": state}, queue=cluster.queue,
                headers={STAMP_HEADER: stamps[state]}, **options).id

        ids = {"active": send(20, "active")}
        wait_until(lambda: cluster.runs("active"), 20, what="the long task to start")
        ids["reserved"] = send(0.1, "reserved")
        ids["scheduled"] = send(0.1, "scheduled", countdown=60)

        def states() -> dict[str, tuple[str, dict | None]]:
            snap = reader.read(["tests.sleep"])
            view = snap.workers.get(worker)
            if view is None:
                return {}
            return {t.id: (t.state, dict(t.stamp) if t.stamp else None) for t in view.tasks}

        wanted = {ids[state]: (state, stamps[state]) for state in ids}
        seen: dict = {}

        def all_reported() -> bool:
            nonlocal seen
            seen = states()
            return seen == wanted
        try:
            wait_until(all_reported, 15, interval=0.3,
                       what="the worker to report one active, one reserved and one "
                            "scheduled task")
        except AssertionError as exc:
            readable = {state: seen.get(task_id) for state, task_id in ids.items()}
            raise AssertionError(f"{exc}; the reply said (by what each task is): "
                                 f"{readable}") from None
        # the two waiting tasks have not started, the long one has
        assert [r.tag for r in cluster.runs()] == ["active"]
        snap = reader.read(["tests.sleep"])
        active = snap.find(ids["active"])
        assert active is not None and active.worker == worker
        assert active.age is not None and active.age > 0
        # a name filter that does not match leaves every state empty
        other = reader.read(["tests.no_such_task"]).workers[worker]
        assert other.tasks == ()
    finally:
        reader.close()
        cluster.close()


# -- 4. buffer_one never sends two ------------------------------------------------------------


def test_buffer_one_remembers_one_missed_run_however_many_due_times_a_blocker_outlasts(
        tmp_path):
    """Promise: while a blocker runs through several due times of a
    ``buffer_one`` entry, beat remembers ONE missed run; when the blocker
    ends it sends exactly one follow-up (the buffered run), not one per
    skipped due time, and nothing while the blocker runs.

    Due every 1.5 s, each run takes 4.8 s: the due times at about +1.5, +3
    and +4.5 s of each run are skipped. ``ccs_beat_buffer_poll_interval`` of
    0.2 s sends the buffered run well before the entry's own next due time
    (the buffered emission restarts the period). The worker has two
    processes, so a second copy would run beside the first."""
    redis_url = require_broker("redis")
    cluster = Cluster(redis_url, tmp_path, settings={"ccs_beat_buffer_poll_interval": 0.2},
                      schedule={"buffered": entry(4.8, "buffered", every=1.5,
                                                  singleton="buffer_one")})
    try:
        cluster.start_worker("w1", concurrency=2)
        beat = cluster.start_beat()
        wait_until(lambda: len(cluster.finished_runs("buffered")) >= 2
                   and len(cluster.runs("buffered")) >= 3, 40,
                   what="two finished runs and the third started")
        time.sleep(0.5)
        cluster.stop(beat)
        runs = cluster.runs("buffered")
        events = beat.decisions("buffered")

        assert_no_overlap(runs)
        emitted = [e for e in events if e.action == "emit"]
        assert [e.task_id for e in emitted] == [r.id for r in runs], (
            "every emission is one run, in order: "
            f"{[(e.task_id, e.buffered) for e in emitted]} vs {[r.id for r in runs]}")
        for before, after in itertools.pairwise(runs):
            assert before.end is not None
            during = [e for e in events if before.start < e.at < before.end - 0.05]
            skips = [e for e in during if e.action == "skip"]
            sent = [e for e in during if e.action == "emit"]
            assert not sent, f"sent while the blocker {before.id} ran: {sent}"
            assert len(skips) >= 2, f"expected several skipped due times during {before.id}"
            # each remembers the missed run (the "one run buffered" of its log line)
            assert all(s.buffered and s.overlap == "buffer_one" for s in skips), skips
            # between this run's end and the next run's end: exactly one emission,
            # the buffered run, sent at once
            after_end = after.end if after.end is not None else time.time()
            follow = [e for e in emitted if before.end - 0.05 <= e.at <= after_end]
            assert len(follow) == 1, (
                f"{len(follow)} emissions after {before.id} ended, for "
                f"{len(skips)} skipped due times: {follow}")
            assert follow[0].buffered and follow[0].task_id == after.id, follow[0]
            assert after.start - before.end < 1.2, (before, after)
    finally:
        cluster.close()
