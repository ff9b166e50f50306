"""Faults: the broker restarts while beat and workers run.

RabbitMQ: ``rabbitmqctl stop_app`` / ``start_app`` (the node process stays, the
broker closes every connection and refuses new ones while it is down).
Redis: ``SHUTDOWN NOSAVE`` and a new ``redis-server`` with the options the
machine's server is started with (it keeps nothing on disk, so every queue
and binding is gone when it comes back -- the harsher case).
Beat survives, reconnects and resumes deciding; no two bodies overlap. The
time from the broker's return to beat's next decision is printed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time

import pytest

from tests.conftest import BROKERS, in_ci, reachable, require_broker
from tests.integration.harness import Cluster, assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(240)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


REDIS_SERVER = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
                "--port", "6379", "--save", "", "--appendonly", "no"]


def broker_answers(name: str) -> bool:
    from kombu import Connection
    try:
        with Connection(BROKERS[name][0], connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def restart_rabbitmq(down_for: float) -> float:
    """Stop and start the broker; return when it was started again."""
    try:
        rabbitmqctl("stop_app")
        time.sleep(down_for)
    finally:
        rabbitmqctl("start_app")
    up_at = time.time()
    rabbitmqctl("await_startup")
    return up_at


def restart_redis(down_for: float) -> float:
    """Shut the server down and start a new one; return when it listened again."""
    import redis
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    try:
        with contextlib.suppress(redis.exceptions.ConnectionError):
            client.shutdown(nosave=True)           # the server closes the connection
        wait_until(lambda: not reachable(("127.0.0.1", 6379)), 20, what="Redis to stop")
        time.sleep(down_for)
    finally:
        # always bring it back, or every later test on Redis fails
        if not reachable(("127.0.0.1", 6379)):
            subprocess.run(REDIS_SERVER, check=True, capture_output=True, timeout=30)
        wait_until(lambda: reachable(("127.0.0.1", 6379)), 30, interval=0.05,
                   what="Redis to start")
    up_at = time.time()
    settle_redis_clients()
    return up_at


def settle_redis_clients() -> None:
    """After a Redis restart the first broadcast from this process fails once
    ("Connection closed by server"), even on a new app; take that hit here so
    the tests that run after this one in the same process do not."""
    from celery import Celery

    def one_ping() -> bool:
        app = Celery("ccs-settle", broker=BROKERS["redis"][0])
        app.conf.control_exchange = "ccs-settle"
        try:
            app.control.ping(timeout=0.2)
            return True
        except Exception:  # noqa: BLE001 - the one failure this absorbs
            return False
        finally:
            app.close()
    wait_until(one_ping, 30, interval=0.2, what="a clean broadcast after the restart")


RESTARTS = {"amqp": ("rabbitmqctl", restart_rabbitmq), "redis": ("redis-server", restart_redis)}


@pytest.mark.parametrize("name", ["amqp", "redis"])
def test_beat_survives_a_broker_restart_and_resumes_deciding(tmp_path, capsys, name):
    require_broker(name)
    tool, restart = RESTARTS[name]
    if shutil.which(tool) is None:
        message = f"{tool} is not installed here, so the broker cannot be restarted"
        if in_ci():
            pytest.fail(f"{message}, and CI=true: this fault test must run")
        pytest.skip(message)
    cluster = Cluster(BROKERS[name][0], tmp_path, schedule={
        "long": {"task": "tests.sleep", "schedule": 1.0, "args": [4],
                 "kwargs": {"tag": "long"}, "options": {"singleton": True}}})
    try:
        cluster.start_worker("w1", concurrency=2)
        beat = cluster.start_beat()
        wait_until(lambda: beat.skipped("long"), 40, what="a first skip")

        down_at = time.time()
        up_at = restart(3.0)
        # wait until the broker accepts connections again (bounded)
        wait_until(lambda: broker_answers(name), 60, interval=0.5,
                   what=f"{name} to accept connections")

        def decided_after_restart():
            return [e for e in beat.decisions("long") if e.at > up_at]
        wait_until(decided_after_restart, 90, interval=0.5,
                   what="beat to decide again after the restart")
        resumed = decided_after_restart()[0].at - up_at
        with capsys.disabled():
            print(f"\n[fault] {name} down {up_at - down_at:.1f}s; beat decided again "
                  f"{resumed:.1f}s after it came back ({decided_after_restart()[0].action})")
        assert beat.alive()
        wait_until(lambda: [r for r in cluster.finished_runs("long") if r.start > up_at], 90,
                   what="a run after the restart")
        assert_no_overlap(cluster.runs("long"))
    finally:
        cluster.close()
