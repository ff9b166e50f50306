"""Shared fixtures: which brokers exist here, and a real cluster per test.

Integration tests run on every transport listed in :data:`BROKERS`. The
filesystem transport needs no server and always runs. RabbitMQ and Redis run
when they are reachable on loopback; when they are not, the test is skipped on
a developer laptop and *fails* when ``CI=true``, so CI can never pass by
silently skipping the real brokers.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import Cluster

RABBITMQ_URL = os.environ.get("CCS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("CCS_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")
BROKERS = {
    "filesystem": ("filesystem://", None),
    "redis": (REDIS_URL, ("127.0.0.1", 6379)),
    "amqp": (RABBITMQ_URL, ("127.0.0.1", 5672)),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def reachable(address: tuple[str, int] | None) -> bool:
    if address is None:
        return True
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def require_broker(name: str) -> str:
    url, address = BROKERS[name]
    if not reachable(address):
        message = f"{name} broker is not reachable at {address[0]}:{address[1]}"
        if in_ci():
            pytest.fail(f"{message}, and CI=true: a real broker is required here")
        pytest.skip(message)
    return url


@pytest.fixture(params=list(BROKERS), ids=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    """Name of the transport under test (filesystem, redis, amqp)."""
    require_broker(request.param)
    return request.param


@pytest.fixture
def make_cluster(tmp_path: Path, broker: str) -> Iterator:
    clusters: list[Cluster] = []

    def factory(**kwargs) -> Cluster:
        cluster = Cluster(BROKERS[broker][0], tmp_path, **kwargs)
        clusters.append(cluster)
        return cluster

    yield factory
    for cluster in clusters:
        cluster.close()


#: redbeat's store in the redbeat tests (its own Redis database)
REDBEAT_DB = "redis://127.0.0.1:6379/5"


@pytest.fixture
def redbeat_cluster(tmp_path):
    """Factory of Clusters on Redis set up for redbeat: each has its own key
    prefix (and so its own lock), queue and control exchange; its keys are
    deleted at the end."""
    broker = require_broker("redis")
    clusters = []

    def factory(schedule=None, **settings):
        cluster = Cluster(broker, tmp_path, schedule=schedule)
        prefix = f"ccs-{cluster.uid}:"
        cluster.settings = {"redbeat_redis_url": REDBEAT_DB, "redbeat_key_prefix": prefix,
                            **settings}
        clusters.append(cluster)
        return cluster

    yield factory
    import redis
    client = redis.Redis.from_url(REDBEAT_DB)
    for cluster in clusters:
        cluster.close()
        prefix = cluster.settings["redbeat_key_prefix"]
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


@dataclass
class ImportProbe:
    """A module on ``sys.path`` that leaves a file behind when it is imported.

    Stored text (a Django row, a Redis entry) that names ``path`` must never
    make ccs_beat import it: :attr:`imported` says whether anything did, in
    this process or in a beat / worker started with :attr:`folder` on its
    ``PYTHONPATH``."""

    module: str
    path: str          # "<module>.key": a valid key function, if it were imported
    folder: Path
    marker: Path

    @property
    def imported(self) -> bool:
        return self.marker.exists() or self.module in sys.modules


@pytest.fixture
def import_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImportProbe:
    module = f"ccs_probe_{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "probe"
    folder.mkdir()
    marker = tmp_path / f"{module}.imported"
    (folder / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\n\n"
        "def key(name, args, kwargs):\n    return 'probe'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    return ImportProbe(module=module, path=f"{module}.key", folder=folder, marker=marker)
