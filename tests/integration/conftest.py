"""SingletonRedBeatScheduler driven in the test process: a Celery app on real
Redis (broker and redbeat's store) with a key prefix, queue and control
exchange of its own, and the ids of the messages this process publishes.
(fixtures ``app`` and ``published``; a module may define its own ``app``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.signals import before_task_publish

from tests.conftest import REDBEAT_DB, require_broker
from tests.integration.harness import Cluster


@pytest.fixture
def app() -> Iterator[Celery]:
    broker = require_broker("redis")
    uid = uuid.uuid4().hex[:10]
    app = Celery(f"ccs_inproc_{uid}", broker=broker, set_as_current=False)
    app.conf.update(
        redbeat_redis_url=REDBEAT_DB, redbeat_key_prefix=f"ccs-inproc-{uid}:",
        redbeat_lock_timeout=30, beat_max_loop_interval=1,
        task_default_queue=f"ccs-inproc-{uid}", control_exchange=f"ctl-{uid}",
        ccs_beat_inspect_timeout=0.2, beat_schedule={})
    yield app
    client = redis.Redis.from_url(REDBEAT_DB)
    keys = list(client.scan_iter(match=f"ccs-inproc-{uid}:*"))
    if keys:
        client.delete(*keys)
    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        conn.default_channel.queue_delete(f"ccs-inproc-{uid}")
    app.close()


@pytest.fixture
def published() -> Iterator[list[str]]:
    """Ids of the messages published in this process, as they are published."""
    ids: list[str] = []

    def record(headers: dict[str, Any] | None = None, **_: Any) -> None:
        ids.append((headers or {}).get("id", "?"))
    before_task_publish.connect(record, weak=False)
    yield ids
    before_task_publish.disconnect(record)


@pytest.fixture
def redis_cluster(tmp_path) -> Iterator[Cluster]:
    """Real worker processes on Redis (tests that need one broker, not all three)."""
    cluster = Cluster(require_broker("redis"), tmp_path)
    yield cluster
    cluster.close()
