"""Faults: a worker that is alive but cannot answer (SIGSTOP'd)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.harness import assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(180)


def test_a_stopped_worker_makes_on_unknown_decide_and_everything_settles(make_cluster):
    cluster = make_cluster(schedule={
        "long": {"task": "tests.sleep", "schedule": 1.0, "args": [8],
                 "kwargs": {"tag": "long"},
                 "options": {"singleton": {"on_unknown": "skip"}}}})
    worker = cluster.start_worker("w1", concurrency=2)
    beat = cluster.start_beat()
    wait_until(lambda: cluster.runs("long"), 40, what="the first run to start")

    stopped_at = time.time()
    os.killpg(worker.popen.pid, signal.SIGSTOP)
    try:
        def unknown_skips():
            return [e for e in beat.skipped("long")
                    if e.at > stopped_at and e.reason == "cluster_unreadable"]
        wait_until(unknown_skips, 20, interval=0.2, what="beat to skip by on_unknown")
        skip = unknown_skips()[0]
        assert skip.unknown and skip.on_unknown == "skip", skip
        # no event field names the worker that did not answer: only the detail's words do
        assert f"no reply from {cluster.hostname('w1')}" in skip.detail, skip
        time.sleep(2)
    finally:
        os.killpg(worker.popen.pid, signal.SIGCONT)
    resumed_at = time.time()

    # after SIGCONT the worker answers again, the run finishes, the next one follows
    wait_until(lambda: len(cluster.finished_runs("long")) >= 2, 60,
               what="the stopped run to end and one more to run")
    runs = cluster.runs("long")
    assert_no_overlap(runs)
    # beat never emitted while a body ran: not while the worker was stopped
    # (on_unknown=skip), nor before the first run's end showed in a read. A body
    # writes its end before its worker drops it from the active list, so an
    # emission can only follow it; 1 ms of slack for the two processes' clock
    # reads. (An emission's own body may start before beat reports it.)
    emitted = [e for e in beat.emitted("long") if stopped_at < e.at]
    assert emitted, "nothing was emitted after the worker was stopped"
    for event in emitted:
        running = [r for r in runs if r.id != event.task_id and r.start < event.at
                   and (r.end is None or r.end > event.at + 0.001)]
        assert not running, (event, running)
    assert resumed_at > stopped_at and beat.alive()
