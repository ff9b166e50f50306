"""A beat emission waiting in a worker's rate-limit bucket is not finished.

Celery keeps a received message of a rate-limited task in a token bucket,
outside the reserved, active and scheduled lists. The worker received it and
does not list it, but its body has not started: it must not be reported done,
or beat would send another copy while it waits (found by a hostile review; a
worker now reports an emission done only once its body started). Real worker
and beat on Redis: an entry every 2 s that expires after 120 s, a rate limit
of 2 a minute."""
from __future__ import annotations

import time

import pytest

from tests.conftest import require_broker
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)


def test_an_emission_waiting_for_its_rate_limit_is_not_taken_for_finished(tmp_path):
    schedule = {"rl": {"task": "tests.sleep", "schedule": 2.0, "args": [0.1],
                       "kwargs": {"tag": "rl"}, "options": {"singleton": {"expires": 120}}}}
    settings = {"task_annotations": {"tests.sleep": {"rate_limit": "2/m"}}}
    cluster = Cluster(require_broker("redis"), tmp_path, schedule=schedule, settings=settings)
    try:
        cluster.start_worker("w1", concurrency=2)
        beat = cluster.start_beat()
        wait_until(lambda: cluster.runs("rl"), 30, what="the first run")
        time.sleep(12)        # well inside the 30 s the bucket holds the 2nd emission
        cluster.stop(beat)
        sent = beat.emitted("rl")
        ran = {r.id for r in cluster.runs("rl")}
        waiting = [e.task_id for e in sent if e.task_id not in ran]
        # never two: at most one emission may wait unrun at a time
        assert len(waiting) <= 1, f"{len(waiting)} emissions queued at once: {waiting}"
    finally:
        cluster.close()
