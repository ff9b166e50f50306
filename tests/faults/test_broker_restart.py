"""Faults: the broker restarts while beat and workers run.

RabbitMQ: ``rabbitmqctl stop_app`` / ``start_app`` (the node process stays, the
broker closes every connection and refuses new ones while it is down).
Beat survives, reconnects and resumes deciding; no two bodies overlap. The
time from the broker's return to beat's next decision is printed.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.conftest import BROKERS, require_broker
from tests.integration import beatlog
from tests.integration.harness import Cluster, assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(240)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def broker_answers() -> bool:
    from kombu import Connection
    try:
        with Connection(BROKERS["amqp"][0], connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_beat_survives_a_rabbitmq_restart_and_resumes_deciding(tmp_path, capsys):
    require_broker("amqp")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here")
    cluster = Cluster(BROKERS["amqp"][0], tmp_path, schedule={
        "long": {"task": "tests.sleep", "schedule": 1.0, "args": [4],
                 "kwargs": {"tag": "long"}, "options": {"singleton": True}}})
    try:
        cluster.start_worker("w1", concurrency=2)
        beat = cluster.start_beat()
        wait_until(lambda: beatlog.skipped(beat.text(), "long"), 40, what="a first skip")

        down_at = time.time()
        try:
            rabbitmqctl("stop_app")
            time.sleep(3)
        finally:
            rabbitmqctl("start_app")
        up_at = time.time()
        # wait until the node accepts connections again (bounded)
        rabbitmqctl("await_startup")
        wait_until(broker_answers, 60, interval=0.5, what="RabbitMQ to accept connections")

        def decided_after_restart():
            return [e for e in beatlog.events(beat.text(), "long") if e.at > up_at]
        wait_until(decided_after_restart, 90, interval=0.5,
                   what="beat to decide again after the restart")
        resumed = decided_after_restart()[0].at - up_at
        with capsys.disabled():
            print(f"\n[fault] RabbitMQ down {up_at - down_at:.1f}s; beat decided again "
                  f"{resumed:.1f}s after it came back ({decided_after_restart()[0].kind})")
        assert beat.alive()
        wait_until(lambda: [r for r in cluster.finished_runs("long") if r.start > up_at], 90,
                   what="a run after the restart")
        assert_no_overlap(cluster.runs("long"))
    finally:
        cluster.close()
