"""The example project's one-command demo, run as a newcomer runs it (``--quick``).

``python -m example_project.demo --quick`` starts beat with
``SingletonDatabaseScheduler`` and two prefork workers on the filesystem
transport, on a fresh SQLite database. This test checks what the demo claims
against the evidence it leaves behind, not only against its own summary:

* both periodic tasks ran, and no two bodies of the same task overlapped --
  recomputed here from ``runs.jsonl``, the start and end each body records;
* beat skipped due runs while a copy was running (its decision events say
  so: ``decisions.jsonl``, the ``ccs_beat_event_log`` setting);
* the operator's manual ``users.update_all.delay()`` was turned away by the
  worker guard (a guard decision event says so, naming the run it yielded to)
  and never ran a body.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from ccs_beat.events import Blocked, DecisionEvent
from ccs_beat.reporting import read_events
from tests.integration.harness import REPO

#: a --quick run takes about 30 s here; the rest is headroom for a loaded machine
TIMEOUT = 150


def run_demo(run_dir: Path, summary: Path) -> subprocess.CompletedProcess[str]:
    """Run the demo to its end; on a timeout, stop it and every process it started."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "CCS_DEMO_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_project.demo", "--quick", "--run-dir", str(run_dir),
         "--json-summary", str(summary)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)          # the demo's own bounded cleanup
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        raise AssertionError(
            f"the demo did not finish within {TIMEOUT}s:\n{out[-6000:]}") from None
    finally:
        kill_leftovers(run_dir)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def kill_leftovers(run_dir: Path) -> None:
    """Kill the process groups the demo recorded, should any have outlived it."""
    groups = run_dir / "process-groups"
    if not groups.exists():
        return
    for line in groups.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(line.split()[0]), signal.SIGKILL)


def log_tail(path: Path) -> str:
    """The end of a process's log, for a failure message (not parsed)."""
    return path.read_text(encoding="utf-8", errors="replace")[-3000:] if path.exists() else ""


def bodies(run_dir: Path) -> dict[str, dict]:
    """Every task body from runs.jsonl: id -> {task, worker, start, end}."""
    runs: dict[str, dict] = {}
    for line in (run_dir / "runs.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        run = runs.setdefault(rec["id"], {"task": rec["task"], "worker": rec["worker"]})
        run[rec["event"]] = rec["t"]
    return runs


def test_quick_demo_runs_both_tasks_once_at_a_time_and_the_guard_turns_the_duplicate_away(
        tmp_path: Path) -> None:
    run_dir, summary_path = tmp_path / "run", tmp_path / "summary.json"
    result = run_demo(run_dir, summary_path)
    out = result.stdout
    assert result.returncode == 0, out[-6000:]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["ok"] and not summary["problems"], (summary, out[-4000:])

    # the newcomer's view: the header, a timeline, the verdict
    assert "ccs_beat demo" in out and "How to read it" in out
    assert re.search(r"^t\+\s+\d+\.\ds  beat     EMIT    users\.update_all", out, re.M), out
    assert "OK: both tasks ran, and no two runs of the same task overlapped" in out

    # both tasks ran, every body ended, none failed
    runs = bodies(run_dir)
    for task in ("blobs.collect_garbage", "users.update_all"):
        mine = sorted((r for r in runs.values() if r["task"] == task), key=lambda r: r["start"])
        assert mine, f"{task} never ran:\n{out[-4000:]}"
        assert all("end" in r for r in mine), f"a body of {task} never ended: {mine}"
        # no overlap, measured here from the recorded intervals
        for a, b in itertools.pairwise(mine):
            assert a["end"] <= b["start"], f"{task} bodies overlap: {a} and {b}"
        row = summary["tasks"][task]
        assert row["runs"] == len(mine) and row["overlaps"] == 0 and row["failed"] == 0, row

    # beat skipped due runs, naming the running copy
    decisions = list(read_events(run_dir / "decisions.jsonl"))
    skips = [e for e in decisions if e.source == "beat" and e.action == "skip"
             and e.reason == "identical_in_cluster" and e.blocker is not None]
    assert skips, log_tail(run_dir / "beat.log")
    assert sum(row["beat_skips"] for row in summary["tasks"].values()) == len(skips)

    # the operator's duplicate: sent while a run was going, turned away by the guard
    manual = summary["manual_duplicate"]
    assert manual["outcome"] == "guard_skipped", (manual, out[-4000:])
    dup, winner = manual["id"], manual["winner"]
    assert dup and winner and dup != winner
    assert dup not in runs, "the turned-away duplicate ran its body"
    assert winner in runs
    aside = [e for e in decisions if e.source == "guard" and e.action == "step_aside"
             and e.task == "users.update_all" and e.task_id == dup]
    assert aside, [e for e in decisions if e.source == "guard"]
    assert aside[0].reason == "peer_running", aside[0]
    assert aside[0].blocker is not None and aside[0].blocker.task_id == winner, aside[0]
    assert aside[0].blocker.worker in ("w1@ccs-demo", "w2@ccs-demo"), aside[0]
    assert re.search(rf"GUARD   users\.update_all\s+{dup[:8]} stepped aside", out), out


def load_timeline() -> ModuleType:
    """``example_project/timeline.py`` by path: importing the ``example_project``
    package would create its Celery app and make it the current app of this
    test process."""
    spec = importlib.util.spec_from_file_location(
        "ccs_demo_timeline", REPO / "example_project" / "timeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_timeline_reads_ccs_beat_decision_events_and_measures_overlaps() -> None:
    """Fast: the demo turns ccs_beat's decision events into timeline lines."""
    timeline = load_timeline()
    Run, overlapping = timeline.Run, timeline.overlapping
    decision_event, parse_log_line = timeline.decision_event, timeline.parse_log_line

    a, b = "9449d79c-6fc7-45a3-bfac-4f3ef472f1c4", "1154278f-c3ab-4085-a5f9-1eef86a32cf9"
    at = 1_800_000_000.0
    emitted = decision_event(DecisionEvent(
        source="beat", action="emit", reason="nothing_identical",
        detail="no identical task queued or running", at=at, task="users.update_all",
        task_id=a, entry="daily user update", expires_in=3.6))
    assert (emitted.what, emitted.task, emitted.task_id, emitted.t) == (
        "EMIT", "users.update_all", a, at)
    assert emitted.detail == "9449d79c: no identical task queued or running, expires in 3.6s"
    skipped = decision_event(DecisionEvent(
        source="beat", action="skip", reason="identical_in_cluster",
        detail="identical task in the cluster", at=at, task="users.update_all",
        entry="daily user update", overlap="skip",
        blocker=Blocked(task_id=a, state="active", worker="w1@ccs-demo", age=4.0)))
    assert skipped.what == "skip"
    assert skipped.detail == "identical task in the cluster (id 9449d79c, active on w1, age 4.0s)"
    guard = decision_event(DecisionEvent(
        source="guard", action="step_aside", reason="peer_running",
        detail=f"an identical task is already running (id {a} on w1@ccs-demo, age 6.7s)",
        at=at, task="users.update_all", task_id=b, worker="w2@ccs-demo", took=4.02,
        blocker=Blocked(task_id=a, state="active", worker="w1@ccs-demo", age=6.7)))
    assert (guard.what, guard.task_id, guard.who) == ("GUARD", b, "w2")
    assert "(id 9449d79c on w1, age 6.7s)" in guard.detail
    ts = "[2026-11-25 20:22:30,123: INFO/MainProcess] "
    assert parse_log_line(f"{ts}Task users.update_all[{a}] received", "w1") is None

    def run(i: str, start: float, end: float | None) -> Run:
        return Run(i, "users.update_all", "w1", start, end)

    assert overlapping([run("x", 0, 5), run("y", 5, 9)], now=20) == []
    assert overlapping([run("x", 0, 5), run("y", 4, 9)], now=20) == [("x", "y")]
    assert overlapping([run("x", 0, None), run("y", 12, 13)], now=20) == [("x", "y")]
