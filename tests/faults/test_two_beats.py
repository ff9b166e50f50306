"""Faults: two beats by mistake (two SingletonSchedulers, each with its own
schedule file, on the same schedule). Each sees the cluster, but they can emit
at the same instant; the worker guard keeps the bodies from overlapping."""

from __future__ import annotations

import re

import pytest

from tests.integration import beatlog
from tests.integration.harness import assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(180)

GUARD_SKIP = re.compile(r"ccs_beat guard: skipped duplicate tests\.guarded\[")


def test_two_beats_on_one_schedule_never_run_two_bodies_at_once(make_cluster, capsys):
    cluster = make_cluster(
        settings={"ccs_beat_guard_delay": 0.6, "ccs_beat_guard_timeout": 0.3,
                  "ccs_beat_guard_margin": 0.15},
        schedule={"guarded": {"task": "tests.guarded", "schedule": 1.0, "args": [2.5],
                              "kwargs": {"tag": "g"}, "options": {"singleton": True}}})
    workers = [cluster.start_worker(f"w{i}", concurrency=2, wait=False) for i in range(2)]
    cluster.wait_for_workers([cluster.hostname(f"w{i}") for i in range(2)])
    first = cluster.start_beat("beat-a")
    second = cluster.start_beat("beat-b", schedule_file="schedule-b")

    wait_until(lambda: len(cluster.finished_runs("g")) >= 4, 90, what="four finished runs")
    runs = cluster.runs("g")
    assert_no_overlap(runs)
    sent = len(beatlog.emitted(first.text(), "guarded")) + \
        len(beatlog.emitted(second.text(), "guarded"))
    turned_away = sum(len(GUARD_SKIP.findall(w.text())) for w in workers)
    with capsys.disabled():
        print(f"\n[fault] two beats: {sent} emissions, {len(runs)} bodies, "
              f"{turned_away} turned away by the guard, 0 overlaps")
    # every emission either ran its body or was turned away by the guard
    assert sent >= len(runs)
    assert first.alive() and second.alive()
    if sent > len(runs) + 1:
        assert turned_away >= 1, (sent, len(runs))
