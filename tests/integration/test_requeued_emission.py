"""A beat emission that started and went back to the queue is not finished.

With ``acks_late`` and ``task_reject_on_worker_lost``, a body whose pool
process dies is requeued. The worker that took it no longer holds it, but it
waits in the broker: reporting it done would let beat send another (found by
a hostile review: a worker now reports an emission done only once its body
returned or raised). Real worker on Redis; the worker stops consuming so the
requeued message stays in the broker."""
from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from ccs_beat.cluster import ClusterReader
from ccs_beat.control import make_stamp
from tests.conftest import require_broker
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)


def test_an_emission_requeued_after_its_pool_process_died_is_not_taken_for_finished(
        tmp_path):
    url = require_broker("redis")
    cluster = Cluster(url, tmp_path, settings={"task_acks_late": True,
                                               "task_reject_on_worker_lost": True})
    try:
        worker = cluster.start_worker("w1", concurrency=1)
        headers = {"ccs_beat": make_stamp("tests.sleep:k", entry="e1")}
        emission = cluster.app.send_task("tests.sleep", args=[30.0], kwargs={"tag": "e"},
                                         queue=cluster.queue, headers=headers).id
        wait_until(lambda: [r for r in cluster.records() if r["kind"] == "start"], 60,
                   what="the body to start")
        (start,) = [r for r in cluster.records() if r["kind"] == "start"]
        # the worker stops taking messages (so the requeued one stays in the broker)
        cluster.app.control.cancel_consumer(cluster.queue, destination=[cluster.hostname("w1")],
                                            reply=True, timeout=5)
        os.kill(start["pid"], signal.SIGKILL)
        r = redis.Redis.from_url(url)
        wait_until(lambda: r.llen(cluster.queue) == 1, 30, what="the message back in the queue")
        time.sleep(1.0)
        reader = ClusterReader(cluster.app, timeout=1.0)
        try:
            snap = reader.read(["tests.sleep"], ids=[emission])
        finally:
            reader.close()
        assert r.llen(cluster.queue) == 1          # still waiting in the broker
        assert snap.find(emission) is None
        assert not snap.done(emission), (
            "the worker reports an emission done while it waits in the broker\n"
            + worker.text()[-1500:])
    finally:
        cluster.close()
