"""A copy that waits behind a full pool does not run again after the winner.

Two identical guarded tasks sent together to one worker with one pool slot:
the first starts at once; the second waits in the worker's reserved list and
starts only when the first body has ended -- its read then finds nothing
running. The first copy's read saw the second waiting, so its body (which
began after that read) served both requests: the second steps aside, naming
the first. A body that never ended (its pool process killed) serves nothing,
and the waiting copy runs.

Real worker processes on Redis and RabbitMQ; D = 0.6 s, T = 0.3 s. Not on
the filesystem transport: its worker loop blocks while it hands a prefetched
task to a full pool, so the running copy's read gets no reply from its own
worker and cannot see the waiting one (docs/limits-faq.md).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import require_broker
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)

SETTINGS = {"ccs_beat_guard_delay": 0.6, "ccs_beat_guard_timeout": 0.3,
            "ccs_beat_guard_margin": 0.15}


@pytest.fixture(params=["redis", "amqp"])
def cluster(request, tmp_path) -> Iterator[Cluster]:
    cluster = Cluster(require_broker(request.param), tmp_path, settings=SETTINGS)
    yield cluster
    cluster.close()


def _send_pair(cluster, seconds: float) -> tuple[str, str]:
    first = cluster.app.send_task("tests.guarded", args=[seconds], kwargs={"tag": "pair"},
                                  queue=cluster.queue).id
    second = cluster.app.send_task("tests.guarded", args=[seconds], kwargs={"tag": "pair"},
                                   queue=cluster.queue).id
    return first, second


def _verdicts(worker, task_id: str) -> list:
    """The guard's decisions about request ``task_id`` on ``worker``."""
    return [e for e in worker.decisions()
            if e.source == "guard" and e.task == "tests.guarded" and e.task_id == task_id]


def _decided(worker, task_id: str) -> bool:
    return bool(_verdicts(worker, task_id))


def _stepped_aside(worker, task_id: str) -> list:
    return [e for e in _verdicts(worker, task_id) if e.action == "step_aside"]


def _settled(cluster, worker, task_id: str) -> bool:
    """The copy decided, and stepped aside or started its body: a decision is
    reported just before the body starts, so the start is waited for too."""
    return bool(_stepped_aside(worker, task_id)) or any(
        r["id"] == task_id for r in _starts(cluster))


def _starts(cluster) -> list[dict]:
    return [r for r in cluster.records() if r["kind"] == "start"]


def test_a_copy_waiting_behind_a_full_pool_steps_aside_for_the_run_that_served_it(cluster):
    worker = cluster.start_worker("w1", concurrency=1)
    first, second = _send_pair(cluster, 1.5)

    wait_until(lambda: _decided(worker, second), 60, what="the waiting copy's decision")
    wait_until(lambda: cluster.finished_runs(), 30, what="the first body to end")

    starts = _starts(cluster)
    assert [r["id"] for r in starts] == [first], f"bodies that ran: {starts}"
    (aside,) = _stepped_aside(worker, second)
    assert aside.blocker and aside.blocker.task_id == first, aside


def test_a_run_whose_pool_process_died_serves_nothing_and_the_waiting_copy_runs(cluster):
    worker = cluster.start_worker("w1", concurrency=1)
    first, second = _send_pair(cluster, 30.0)

    wait_until(lambda: _starts(cluster), 60, what="the first body to start")
    (victim,) = _starts(cluster)
    assert victim["id"] == first
    os.kill(victim["pid"], signal.SIGKILL)     # the pool process, not the worker

    wait_until(lambda: _settled(cluster, worker, second), 60,
               what="the waiting copy's decision, and its body's start if it runs")
    assert [r["id"] for r in _starts(cluster)] == [first, second], worker.text()[-3000:]


def test_a_request_that_reuses_a_covered_id_after_the_run_ended_is_not_covered(cluster):
    # apps that pick their own ids (``task_id="sync-users"``) send the same id
    # again later: a cover holds for the very message the run saw (its
    # stamped send time), not for every request of that id
    worker = cluster.start_worker("w1", concurrency=1)

    def send(**options) -> str:
        return cluster.app.send_task("tests.guarded", args=[1.0], kwargs={"tag": "pair"},
                                     queue=cluster.queue, **options).id

    first, second = send(), send(task_id="sync-users")
    wait_until(lambda: _decided(worker, second), 60, what="the waiting copy's decision")
    assert [r["id"] for r in _starts(cluster)] == [first]    # the second was covered
    wait_until(lambda: cluster.finished_runs(), 30, what="the first body to end")

    third = send(task_id="sync-users")
    # the second request had the same id and stepped aside: a second step-aside
    # under that id is the third's
    wait_until(lambda: len(_starts(cluster)) > 1 or len(_stepped_aside(worker, third)) > 1, 60,
               what="the new request's decision")
    assert [r["id"] for r in _starts(cluster)] == [first, third], worker.text()[-3000:]


@pytest.mark.parametrize("stop", ["revoke(terminate=True)", "soft_time_limit", "time_limit"])
def test_a_run_stopped_before_its_body_returned_serves_nothing(cluster, stop):
    # a terminate (SIGTERM), a hard time limit (SIGTERM, then SIGKILL) and a
    # soft time limit all end the body without its work done: the copy that
    # waited behind it must run
    worker = cluster.start_worker("w1", concurrency=1)
    limits = {"soft_time_limit": {"soft_time_limit": 4}, "time_limit": {"time_limit": 4}}
    options = limits.get(stop, {})

    def send() -> str:
        return cluster.app.send_task("tests.guarded", args=[30.0], kwargs={"tag": "pair"},
                                     queue=cluster.queue, **options).id

    first, second = send(), send()
    wait_until(lambda: _starts(cluster), 60, what="the first body to start")
    if stop.startswith("revoke"):
        cluster.app.control.revoke(first, terminate=True)
    wait_until(lambda: _settled(cluster, worker, second), 60,
               what="the waiting copy's decision, and its body's start if it runs")
    assert [r["id"] for r in _starts(cluster)] == [first, second], worker.text()[-3000:]
