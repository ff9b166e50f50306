"""``celery ccs status`` against a real cluster with a singleton running."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(150)


def ccs_status(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.integration.proj", "ccs", "status",
         "--schedule", str(cluster.dir / "schedule"), *args],
        cwd=cluster.dir, env=cluster.env(), capture_output=True, text=True, timeout=60)


def test_status_shows_the_running_singleton_and_the_beat_ledger(make_cluster):
    cluster = make_cluster(schedule={
        "long": {"task": "tests.sleep", "schedule": 1.0, "args": [20],
                 "kwargs": {"tag": "long"}, "options": {"singleton": True}}})
    worker = cluster.start_worker("w1", concurrency=1)
    beat = cluster.start_beat()
    wait_until(lambda: cluster.runs("long"), 40, what="the singleton to start")
    wait_until(lambda: beat.skipped("long"), 20, what="beat to skip it")
    run = cluster.runs("long")[0]

    result = ccs_status(cluster, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = [r for r in report["rows"] if r["id"] == run.id]
    assert rows, report
    row = rows[0]
    assert (row["task"], row["state"], row["worker"]) == ("tests.sleep", "active",
                                                          cluster.hostname("w1"))
    assert row["key"] == run.stamp["key"] and row["age"] is not None and row["age"] >= 0
    assert cluster.hostname("w1") in report["answered"] and not report["silent"]
    assert "schedule file" in report["ledger_source"]
    assert [e["task_id"] for e in report["ledger"] if e["entry"] == "long"] == [run.id]

    text = ccs_status(cluster)
    assert text.returncode == 0, text.stderr
    assert "Singleton tasks in the cluster (1):" in text.stdout
    line = next(x for x in text.stdout.splitlines() if run.id in x and "active" in x)
    assert "tests.sleep" in line and cluster.hostname("w1") in line
    assert "Beat ledger (schedule file" in text.stdout
    assert "Workers: 1 answered" in text.stdout
    assert worker.alive()


def test_status_with_no_worker_says_nobody_answered_not_none_running(make_cluster):
    cluster = make_cluster()
    result = ccs_status(cluster, "--timeout", "0.5")
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("No worker answered within 0.5s")
    assert "none running" not in result.stdout
    assert "no beat schedule file" in result.stdout


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "61"])
def test_status_refuses_a_timeout_that_is_not_a_positive_number_before_using_the_broker(
        tmp_path, timeout):
    # a broker nobody listens on: any attempt to use it would fail differently
    cluster = Cluster("amqp://guest:guest@127.0.0.1:9//", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.integration.proj", "ccs", "status",
         "--timeout", timeout], cwd=cluster.dir, env=cluster.env(), capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--timeout" in result.stderr and "(0, 60]" in result.stderr
    assert "none running" not in result.stdout
