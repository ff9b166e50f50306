"""A task id is data: whoever sends a task chooses it, and beat writes the id of
the task that blocks an entry into its log. A real beat and worker on Redis."""

from __future__ import annotations

import pytest

from tests.conftest import require_broker
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)

FORGED_LINE = "[2026-12-03 08:00:00,000: CRITICAL/MainProcess] beat: lost the database"


def test_a_blocker_id_holding_a_newline_cannot_forge_a_line_in_beats_log(tmp_path):
    cluster = Cluster(require_broker("redis"), tmp_path, schedule={
        "long": {"task": "tests.sleep", "schedule": 1.0, "args": [0.1],
                 "kwargs": {"tag": "long"}, "options": {"singleton": {"key": "name"}}}})
    try:
        cluster.start_worker("w1", concurrency=2)
        cluster.send(8.0, tag="blocker", task_id="x\n" + FORGED_LINE + "\r\n")
        wait_until(lambda: cluster.runs("blocker"), 20, what="the blocker to start")
        beat = cluster.start_beat()
        # the decision is read from beat's events; its log line is what this test is about
        # (the line is written before the event)
        wait_until(lambda: beat.skipped("long"), 30, what="beat to skip, naming the blocker")

        lines = beat.text().splitlines()
        assert not any(line.startswith(FORGED_LINE[:25]) for line in lines)
        skip = next(line for line in lines if "skipped 'long'" in line)
        assert "x\\x0a" + FORGED_LINE in skip
    finally:
        cluster.close()
