"""A cluster read finishes within its timeout ``T``, retry included.

The worker guard decides at ``D + T`` at the latest; peers take a copy still
active after ``D + T + margin`` for one that chose to run. A read that failed
late and retried with a fresh ``T`` decided up to ``2T`` after it began: its
copy skipped while its peers had already stepped aside for it.

A real worker on Redis answers; the reader's first attempt meets a transport
error late in its budget (injected: a connection the broker dropped).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from ccs_beat.cluster import ClusterReader
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(90)

T = 1.0


def failing_late_once(reader: ClusterReader, after: float) -> None:
    """The reader's first attempt fails ``after`` seconds in; later ones are real."""
    real = reader._read
    calls = []

    def attempt(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(after)
            raise ConnectionResetError("connection dropped by the broker")
        return real(*args, **kwargs)
    reader._read = attempt   # type: ignore[method-assign]


def read_failing_late_once(cluster: Cluster, after: float) -> tuple[Any, float]:
    """``(snapshot, seconds taken)`` of a read whose first attempt fails late."""
    cluster.start_worker("w1", concurrency=1)
    # a first read by a new reader waits its whole timeout (it cannot know
    # whom to expect), as a guard's first read in a new pool process does
    reader = ClusterReader(cluster.app, timeout=T, worker_expiry=30.0)
    failing_late_once(reader, after=after)
    try:
        began = time.monotonic()
        snapshot = reader.read(None)
        return snapshot, time.monotonic() - began
    finally:
        reader.close()


def test_a_read_that_retries_still_ends_within_its_timeout(redis_cluster):
    snapshot, took = read_failing_late_once(redis_cluster, after=0.6 * T)

    assert took <= T + 0.25, f"the read took {took:.2f}s with a {T}s budget"
    assert redis_cluster.hostname("w1") in snapshot.workers   # the retry did read the cluster


def test_a_read_that_fails_with_no_budget_left_reports_the_failure_in_time(redis_cluster):
    snapshot, took = read_failing_late_once(redis_cluster, after=0.98 * T)

    assert took <= T + 0.25, f"the read took {took:.2f}s with a {T}s budget"
    assert snapshot.failure is not None and "connection dropped" in snapshot.failure
