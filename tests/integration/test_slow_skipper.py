"""A copy that decided to step aside is no peer, however long it lingers.

A skipping copy stays on its worker's active list while its ``SKIPPED`` state
is written and its ``duplicate_skipped`` receivers run. Every guard takes a
copy active past ``D + T + margin`` for one that chose to run: a later
duplicate stepped aside for a copy that was not running, and that request
never ran. A real worker on Redis whose receiver takes 8 s.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import Cluster, assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(120)


def send(cluster: Cluster, seconds: float) -> str:
    """An identical guarded task (same arguments: one key)."""
    return cluster.app.send_task("tests.guarded", args=[seconds], kwargs={"tag": "same"},
                                 queue=cluster.queue).id


def stepped_aside(worker, task_id: str) -> bool:
    """The guard on ``worker`` turned request ``task_id`` away."""
    return any(e.source == "guard" and e.action == "step_aside" and e.task == "tests.guarded"
               and e.task_id == task_id for e in worker.decisions())


def test_a_later_duplicate_runs_when_the_only_copy_left_is_one_that_skipped(redis_cluster):
    cluster = redis_cluster
    worker = cluster.start_worker("w1", concurrency=3, CCS_TEST_SLOW_SKIP="8")
    first = send(cluster, 4.0)           # runs, ends about 6.5 s from now
    time.sleep(1.0)
    skipper = send(cluster, 4.0)         # ranks after the first: skips, lingers 8 s
    wait_until(lambda: stepped_aside(worker, skipper), 20,
               what="the second copy to step aside")
    wait_until(lambda: [r for r in cluster.finished_runs("same") if r.id == first], 20,
               what="the first to end")

    later = send(cluster, 4.0)           # the skipper is still on the active list
    wait_until(lambda: later in {r.id for r in cluster.runs("same")} or
               stepped_aside(worker, later), 20,
               what="the third copy's decision")

    assert [r.id for r in cluster.runs("same")] == [first, later], worker.text()[-2000:]
    assert_no_overlap(cluster.runs())
