"""Promises of the worker guard's documentation, pinned with real workers.

* docs/guard.md "Using it": a task whose class is ``SingletonTask`` only
  because the app's ``task_cls`` is ``ccs_beat:SingletonTask`` (it declares no
  ``singleton``) is guarded when its message carries beat's stamp, and goes
  straight to its body when it does not.
* docs/how-it-works.md §2 (and ccs_beat/cluster.py, ``Membership``): a read
  waits for a worker it did not know when an answering peer's gossip lists
  it; it does not return before that worker has answered.

Real ``celery worker`` processes on Redis (tests/integration/harness.py).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from celery.result import AsyncResult

from ccs_beat import SingletonScheduler
from ccs_beat.cluster import ClusterReader
from tests.conftest import require_broker
from tests.integration.harness import REPO, Cluster, wait_until

pytestmark = pytest.mark.timeout(120)

#: loopback Redis answers in milliseconds: D, T and the margin scaled down
#: (D >= T + 2 * margin), as in test_guard_cluster.py
GUARD = {"ccs_beat_guard_delay": 0.6, "ccs_beat_guard_timeout": 0.3,
         "ccs_beat_guard_margin": 0.15}

# -- 3. guarded by beat's stamp alone -----------------------------------------------------

#: the worker's app: tests/integration/proj.py's configuration with
#: ``task_cls = "ccs_beat:SingletonTask"``, and one task that declares nothing
TASK_CLS_APP = '''\
"""Worker app written by test_promises_guard.py: every task of this app is a
ccs_beat.SingletonTask because of the app's task_cls; none declares singleton."""
import os

from tests.integration import proj

app = proj.make_app(dict(os.environ))
app.task_cls = "ccs_beat:SingletonTask"    # what Celery(..., task_cls=...) sets


@app.task(name="tests.by_task_cls", bind=True)
def by_task_cls(self, seconds, tag="default"):
    return proj._body(self, seconds, tag)
'''


def task_cls_cluster(tmp_path: Path, redis_url: str) -> Cluster:
    folder = tmp_path / "apps"
    folder.mkdir()
    module = f"ccs_task_cls_{uuid.uuid4().hex[:10]}"
    (folder / f"{module}.py").write_text(TASK_CLS_APP, encoding="utf-8")
    return Cluster(redis_url, tmp_path, settings=GUARD, backend=redis_url, app_module=module,
                   extra_env={"PYTHONPATH": os.pathsep.join([str(REPO), str(folder)])})


def test_a_task_cls_singleton_task_is_guarded_by_beats_stamp_and_only_by_it(tmp_path):
    """Promise: ``task_cls="ccs_beat:SingletonTask"`` guards every task beat
    emits with a singleton policy; a SingletonTask without ``singleton`` is
    guarded only when beat's stamp says so.

    Two identical copies with beat's stamp (sent by SingletonScheduler itself,
    as two beats by mistake would) start together: exactly one body runs, the
    other steps aside (result state SKIPPED, naming the winner). Two identical
    copies sent with ``send_task`` (no beat stamp) start together: both bodies
    run, side by side, without a guard decision."""
    redis_url = require_broker("redis")
    cluster = task_cls_cluster(tmp_path, redis_url)
    beats: list[SingletonScheduler] = []
    try:
        worker = cluster.start_worker("w1", concurrency=4)
        app = cluster.app
        app.conf.beat_schedule = {"stamped": {
            "task": "tests.by_task_cls", "schedule": 3600.0, "args": [2.0],
            "kwargs": {"tag": "stamped"}, "options": {"singleton": True}}}
        # two beats by mistake, each with its own schedule file: both send
        for name in ("beat-a", "beat-b"):
            beats.append(SingletonScheduler(
                app=app, schedule_filename=str(cluster.dir / f"{name}.schedule")))
        stamped = [beat.apply_async(beat.schedule["stamped"]).id for beat in beats]
        plain = [app.send_task("tests.by_task_cls", args=[2.0], kwargs={"tag": "plain"},
                               queue=cluster.queue).id for _ in range(2)]

        def settled() -> bool:
            """Every copy has ended: its body ran (SUCCESS) or it stepped aside."""
            return all(AsyncResult(i, app=app).state in ("SUCCESS", "SKIPPED")
                       for i in (*stamped, *plain))

        wait_until(settled, 30, what="the four copies to end")

        # with beat's stamp: one body, one SKIPPED naming the winner
        ran = cluster.runs("stamped")
        assert len(ran) == 1, f"stamped copies whose body ran: {[r.id for r in ran]}"
        winner = ran[0].id
        assert ran[0].stamp and ran[0].stamp["entry"] == "stamped", ran[0].stamp
        (loser,) = set(stamped) - {winner}
        result = AsyncResult(loser, app=app)
        assert result.state == "SKIPPED"
        assert result.info["winner"] == winner
        decisions = {e.task_id: e.action for e in worker.decisions()
                     if e.source == "guard" and e.task == "tests.by_task_cls"}
        assert decisions.get(winner) == "run" and decisions.get(loser) == "step_aside", decisions

        # without it: both bodies ran, at the same time, and no guard decided
        both = cluster.runs("plain")
        assert sorted(r.id for r in both) == sorted(plain), (
            f"unstamped copies whose body ran: {[r.id for r in both]} of {plain}; "
            f"states {[AsyncResult(i, app=app).state for i in plain]}")
        first, second = both
        assert second.start < first.end, "the unstamped copies did not run side by side"
        assert not set(plain) & set(decisions), "the guard decided an unstamped copy"
        assert all(not (r.stamp or {}).get("key") for r in both), [r.stamp for r in both]
        for task_id in (*stamped, *plain):
            AsyncResult(task_id, app=app).forget()
    finally:
        for beat in beats:
            beat.close()
        cluster.close()


# -- 5. a worker a peer's gossip names is waited for ------------------------------------


def test_a_read_waits_for_a_worker_it_did_not_know_when_a_peers_gossip_lists_it(tmp_path):
    """Promise (docs/how-it-works.md §2, "a peer lists a worker we did not
    know: waits for that worker too"; ``ClusterReader`` / ``Membership``):
    when an answering worker's ``peers`` name a worker the reader has never
    heard from, the read keeps waiting for that worker's reply -- and returns
    once it came, not at the timeout.

    The reader knows only worker ``a`` (one read before ``b`` existed). Then
    ``b`` starts on the solo pool, which answers broadcasts only between
    tasks, and gets a 2.5 s task; ``a`` consumes another queue and answers at
    once. ``a``'s gossip lists ``b``, so the read must wait until ``b``
    finished its task and answered."""
    redis_url = require_broker("redis")
    cluster = Cluster(redis_url, tmp_path)
    quiet = {"task_default_queue": f"{cluster.queue}-quiet"}
    # the reader under test and a probe that watches a's gossip each have a
    # client app of their own (their own reply queues), so that neither the
    # probe's reads nor the harness's pings teach the reader anything
    from tests.integration.proj import make_app
    reader_app, probe_app = make_app(cluster.env()), make_app(cluster.env())
    reader = ClusterReader(reader_app, timeout=1.0)
    probe = ClusterReader(probe_app, timeout=1.0)
    try:
        a, b = cluster.hostname("a"), cluster.hostname("b")
        cluster.start_worker("a", concurrency=1, CCS_TEST_SETTINGS=json.dumps(quiet))
        first = reader.read()
        assert set(first.workers) == {a}
        assert reader.membership.expected() == {a}

        cluster.start_worker("b", pool="solo", concurrency=1)

        def a_lists_b() -> bool:
            view = probe.read().workers.get(a)
            return bool(view and view.peers and b in view.peers)
        wait_until(a_lists_b, 20, interval=0.3, what="a's gossip to list b")
        assert b not in reader.membership.expected()

        cluster.send(2.5, tag="busy")   # only b consumes the default queue
        wait_until(lambda: cluster.runs("busy"), 10, interval=0.05,
                   what="b to start its task")
        started = time.time()
        reader.timeout = 10.0
        snap = reader.read()
        busy = cluster.runs("busy")[0]

        assert snap.answered(a), snap.summary()
        assert snap.answered(b), (
            f"the read returned after {snap.elapsed:.2f}s without waiting for {b}, which "
            f"{a}'s gossip listed: {snap.summary()}")
        assert not snap.missing and snap.incomplete_reason() is None, snap.summary()
        # it waited for b (b could answer only once its task was over) ...
        assert started + snap.elapsed >= busy.start + 2.5 - 0.2, (snap.elapsed, busy)
        # ... and returned once b had answered, not at the timeout
        assert snap.elapsed < reader.timeout - 2.0, snap.elapsed
        assert reader.membership.expected() >= {a, b}
    finally:
        for used in (probe, reader):
            used.close()
            used.app.close()
        cluster.close()

