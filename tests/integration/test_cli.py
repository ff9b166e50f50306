"""The ``celery`` command line: the ``-S ccs`` alias and ``celery ccs check``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.harness import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def broker() -> str:
    return "filesystem"


def celery(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tests.integration.proj", *args],
                          cwd=cluster.dir, env=cluster.env(), capture_output=True, text=True,
                          timeout=60)


def test_beat_accepts_the_short_scheduler_alias_ccs(make_cluster):
    cluster = make_cluster(schedule={"job": {"task": "tests.sleep", "schedule": 1.0,
                                             "args": [0.1]}})
    beat = cluster.start_beat(scheduler="ccs")
    wait_until(lambda: beat.emitted("job"), 30, what="an emission")
    cluster.stop(beat)

    assert "ccs_beat.scheduler.SingletonScheduler" in beat.text()


def test_ccs_check_prints_each_entry_policy(make_cluster):
    cluster = make_cluster(schedule={
        "gc": {"task": "tests.sleep", "schedule": 60, "args": [1],
               "options": {"singleton": {"overlap": "buffer_one", "key": "name"}}},
        "ping": {"task": "tests.sleep", "schedule": 10, "options": {"singleton": False}},
    })
    result = celery(cluster, "ccs", "check")

    assert result.returncode == 0, result.stderr
    assert "gc: overlap=buffer_one key=name on_unknown=emit" in result.stdout
    assert "ping: not checked (allow)" in result.stdout


def test_ccs_check_fails_naming_every_bad_entry(make_cluster):
    cluster = make_cluster(schedule={
        "a": {"task": "tests.sleep", "schedule": 60, "options": {"singleton": "skipp"}},
        "b": {"task": "tests.sleep", "schedule": 60, "args": [[1, 2]],
              "options": {"singleton": {"expires": -5}}},
    })
    result = celery(cluster, "ccs", "check")

    assert result.returncode == 1
    assert "'a'" in result.stderr and "'skipp'" in result.stderr and "did you mean 'skip'" \
        in result.stderr
    assert "'b'" in result.stderr and "-5" in result.stderr


def test_ccs_check_prints_an_entry_name_holding_a_newline_on_one_line(make_cluster):
    # entry names come from rows and Redis too: they cannot add a line of their own
    cluster = make_cluster(schedule={
        "evil\nnightly-gc": {"task": "tests.sleep", "schedule": 60, "args": [1]}})
    result = celery(cluster, "ccs", "check")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not any(line.startswith("nightly-gc") for line in lines), lines
    assert any(line.startswith("evil\\x0anightly-gc: overlap=skip") for line in lines), lines
