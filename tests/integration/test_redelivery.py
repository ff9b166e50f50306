"""A guarded ``acks_late`` task redelivered onto the worker still running it
steps aside: two active requests with one id are two bodies.

Redis hands an unacknowledged message out again once its visibility timeout
has passed; a task that runs longer than that is redelivered while it runs.
With one worker and two pool slots the copy lands beside the original, under
the same task id, on the same worker. A real worker on Redis, a visibility
timeout of 3 s swept every second, and a body of 12 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_broker
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)

VISIBILITY = 3.0
BODY = 12.0


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    cluster = Cluster(require_broker("redis"), tmp_path, settings={
        "task_acks_late": True,
        # kombu sweeps for unacknowledged messages every second, not every 100 s
        "broker_transport_options": {"visibility_timeout": VISIBILITY,
                                     "unacked_restore_interval": 1,
                                     "unacked_restore_throttle": 1},
    })
    yield cluster
    cluster.close()


def bodies(cluster: Cluster, task_id: str) -> list[dict]:
    """Every body of ``task_id`` that started (one record per body, whatever its id)."""
    return [r for r in cluster.records() if r["kind"] == "start" and r["id"] == task_id]


def stepped_aside(worker, task_id: str | None = None) -> list:
    """The guard's step-aside decisions on ``worker`` (about ``task_id``, if given)."""
    return [e for e in worker.decisions() if e.source == "guard" and e.action == "step_aside"
            and e.task == "tests.guarded" and (task_id is None or e.task_id == task_id)]


def test_a_copy_redelivered_to_the_same_worker_steps_aside(cluster):
    worker = cluster.start_worker("w1", concurrency=2)
    task_id = cluster.app.send_task("tests.guarded", args=[BODY], kwargs={"tag": "late"},
                                    queue=cluster.queue).id
    wait_until(lambda: bodies(cluster, task_id), 20, what="the first body to start")
    # the copy is delivered after the visibility timeout, then guards for D + T
    wait_until(lambda: stepped_aside(worker) or len(bodies(cluster, task_id)) > 1, BODY,
               what="the redelivered copy's decision")
    time.sleep(0.5)

    started = bodies(cluster, task_id)
    assert len(started) == 1, f"{len(started)} bodies of {task_id} ran: {started}"
    assert stepped_aside(worker, task_id), worker.text()[-3000:]
