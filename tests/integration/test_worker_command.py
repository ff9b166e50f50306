"""Workers answer ccs_beat's cluster read, and how they come to."""

from __future__ import annotations

import pytest

from ccs_beat.cluster import ClusterReader
from tests.conftest import BROKERS, reachable
from tests.integration.harness import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def broker() -> str:
    """These tests are about the worker process, not the transport: Redis where
    it runs (kombu's filesystem transport can hand a reader a half-written
    reply file, which made the read counts and timings here flaky in CI)."""
    return "redis" if reachable(BROKERS["redis"][1]) else "filesystem"


def test_worker_started_with_the_celery_command_serves_the_read_without_importing_ccs_beat(
        make_cluster):
    cluster = make_cluster()
    cluster.start_worker("w1", CCS_TEST_NO_IMPORT="1")
    task_id = cluster.send(5, tag="seen")
    wait_until(lambda: cluster.runs("seen"), 30, what="the task to start")

    snapshot = ClusterReader(cluster.app, timeout=2.0).read()

    view = snapshot.workers[cluster.hostname("w1")]
    assert not view.legacy, "answered through the stock commands, not ccs_snapshot"
    assert [(t.id, t.state) for t in view.tasks] == [(task_id, "active")]
    assert view.now is not None and view.tasks[0].age is not None


def test_read_returns_before_the_timeout_once_every_known_worker_answered(make_cluster,
                                                                         caplog):
    caplog.set_level("INFO", logger="ccs_beat")
    cluster = make_cluster()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    reader = ClusterReader(cluster.app, timeout=5.0)

    first = reader.read()            # membership unknown: waits for the full timeout
    second = reader.read()           # both workers known: returns when both answered

    assert set(first.workers) == set(second.workers) == {
        cluster.hostname("w1"), cluster.hostname("w2")}
    assert first.elapsed >= 5.0
    assert second.elapsed < 5.0 and second.incomplete_reason() is None
    # one broadcast per read, plus the reader's single retry when kombu's
    # filesystem transport hands it a half-written reply file (seen in CI)
    retries = sum("retrying once" in r.getMessage() for r in caplog.records)
    assert reader.reads == 2 and reader.broadcasts == 2 + retries
