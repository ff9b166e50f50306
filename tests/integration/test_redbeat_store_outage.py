"""redbeat's Redis going away for a moment never stops a SingletonRedBeatScheduler.

Stock redbeat logs a failed send and carries on; a skipped run writes to Redis
too (the entry moves to its next due time), and that write must be as
forgiving. The test runs redbeat's store on a redis-server of its own, stops it
right after the cluster read of a tick that skips an entry (the write comes
next), and starts it again.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.schedules import schedule
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import acquire_distributed_beat_lock

from ccs_beat import signals
from ccs_beat.contrib.redbeat import SingletonRedBeatScheduler

pytestmark = pytest.mark.timeout(90)


class PrivateRedis:
    """A redis-server on a free port that the test can stop and start again
    (its append-only file keeps the entries and the lock across the restart)."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_redis_outage_while_a_run_is_skipped_does_not_stop_beat(
        app: Celery, store: PrivateRedis, published: list[str]) -> None:
    app.conf.redbeat_redis_url = store.url
    RedBeatSchedulerEntry("gc", "tests.sleep", schedule(1.0), args=[1], app=app,
                          options={"singleton": {"expires": 60}}).save()
    beat = SingletonRedBeatScheduler(app=app, lazy=False)
    acquire_distributed_beat_lock(SimpleNamespace(scheduler=beat))
    skipped: list[Any] = []

    def on_skip(entry: Any = None, **_: Any) -> None:
        skipped.append(entry.name)
    signals.entry_skipped.connect(on_skip, weak=False)
    try:
        deadline = time.monotonic() + 20
        while not published:   # the first run goes out; no worker takes it
            assert time.monotonic() < deadline, "the first run was never sent"
            time.sleep(min(beat.tick(), 0.2))
        assert beat.ccs_coordinator is not None
        read = beat.ccs_coordinator.reader.read

        def read_then_lose_redis(*args: Any, **kwargs: Any) -> Any:
            snapshot = read(*args, **kwargs)
            store.stop()           # the skip's write to Redis comes next
            return snapshot
        beat.ccs_coordinator.reader.read = read_then_lose_redis   # type: ignore[method-assign]
        time.sleep(1.1)            # due again, and blocked by the queued first run

        delay = beat.tick()        # must not raise: celery's beat loop would exit

        assert isinstance(delay, (int, float))
        assert skipped == ["gc"], "the skip was neither logged nor signalled"
        beat.ccs_coordinator.reader.read = read   # type: ignore[method-assign]
        store.start()
        skipped.clear()
        deadline = time.monotonic() + 20
        while not skipped:     # Redis is back: beat goes on deciding the entry
            assert time.monotonic() < deadline, "beat did not go on after the outage"
            time.sleep(min(beat.tick(), 0.2))
        assert len(published) == 1
    finally:
        signals.entry_skipped.disconnect(on_skip)
        if store.proc is None:
            store.start()
        beat.close()
