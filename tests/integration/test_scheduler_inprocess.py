"""SingletonScheduler driven tick by tick in the test process, on a real broker.

These look at what beat puts on the wire and at the signals it sends, which the
subprocess scenarios cannot observe. No worker runs, so every read finds nobody
(the filesystem transport and Redis answer that quickly with a short timeout).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from kombu import Queue

from ccs_beat import SingletonScheduler
from ccs_beat.signals import entry_emitted, entry_skipped
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def scheduler(make_cluster) -> Iterator[tuple[Cluster, SingletonScheduler]]:
    cluster = make_cluster(
        schedule={"queued": {"task": "tests.sleep", "schedule": 0.5, "args": [0],
                             "kwargs": {"tag": "q"},
                             "options": {"singleton": {"expires": 30}, "priority": 3}}},
        settings={"ccs_beat_inspect_timeout": 0.3})
    app = cluster.app
    app.conf.beat_schedule = cluster.schedule
    sched = SingletonScheduler(app=app, schedule_filename=str(cluster.dir / "schedule"))
    yield cluster, sched
    sched.close()


def tick_until(sched: SingletonScheduler, predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out ticking"
        delay = sched.tick()
        if delay and delay > 0:              # as celery.beat.Service does
            time.sleep(min(delay, 0.2))


def test_signals_report_each_emission_and_each_skip_with_its_blocker(scheduler):
    _, sched = scheduler
    emitted, skipped = [], []
    on_emit = lambda sender, **kw: emitted.append(kw)  # noqa: E731
    on_skip = lambda sender, **kw: skipped.append(kw)  # noqa: E731
    entry_emitted.connect(on_emit, weak=False)
    entry_skipped.connect(on_skip, weak=False)
    try:
        tick_until(sched, lambda: emitted and skipped)
    finally:
        entry_emitted.disconnect(on_emit)
        entry_skipped.disconnect(on_skip)

    first = emitted[0]
    assert first["entry"].name == "queued" and first["task_id"]
    assert first["decision"].unknown            # no worker answered: on_unknown=emit
    skip = skipped[0]
    assert skip["decision"].blocker.task_id == first["task_id"]
    assert skip["decision"].blocker.state == "queued"
    assert skip["key"] == first["key"]


def test_emitted_message_has_expiry_and_stamp_but_no_singleton_option(scheduler, broker):
    cluster, sched = scheduler
    tick_until(sched, lambda: sched.ccs_coordinator.ledger.entries.get("queued"))
    task_id = sched.ccs_coordinator.ledger.entries["queued"][0].task_id

    with cluster.app.connection_for_read() as conn:
        queue = Queue(cluster.queue, channel=conn.default_channel)
        deadline = time.monotonic() + 10
        message = None
        while message is None and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.1)
    assert message is not None, "the emission is not in the queue"
    headers = message.headers
    assert headers["id"] == task_id
    assert headers["expires"]                       # the policy's 30 s
    assert headers["ccs_beat"]["entry"] == "queued"
    assert headers["ccs_beat"]["key"].startswith("tests.sleep:")
    assert "singleton" not in headers and "singleton" not in message.properties
    assert message.properties.get("priority") == 3  # other options pass through


def test_skipped_run_still_advances_the_schedule(scheduler):
    # The entry is due every 0.5 s; its only emission stays queued (no worker,
    # expires in 30 s), so every later due run is skipped. Each skip must move
    # the schedule on exactly as a sent run does: Celery's tick reserves the
    # entry (last_run_at = now, total_run_count + 1) before ccs_beat decides,
    # and nothing may undo or repeat that.
    _, sched = scheduler
    period = sched.schedule["queued"].schedule.seconds
    decisions: list[tuple[str, float, str | None]] = []     # (kind, when, task id)
    on_emit = lambda sender, **kw: decisions.append(  # noqa: E731
        ("emitted", time.time(), kw["task_id"]))
    on_skip = lambda sender, **kw: decisions.append(  # noqa: E731
        ("skipped", time.time(), kw["decision"].blocker.task_id))
    entry_emitted.connect(on_emit, weak=False)
    entry_skipped.connect(on_skip, weak=False)
    # after each tick that decided a run: (kind, decided at, last_run_at, total_run_count)
    after: list[tuple[str, float, float, int]] = []
    deadline = time.monotonic() + 20
    try:
        while len(after) < 4:
            assert time.monotonic() < deadline, f"timed out ticking: {decisions}"
            seen = len(decisions)
            delay = sched.tick()
            assert len(decisions) <= seen + 1, "one tick decided more than one run"
            if len(decisions) > seen:
                entry = sched.schedule["queued"]
                kind, when, _ = decisions[-1]
                after.append((kind, when, entry.last_run_at.timestamp(),
                              entry.total_run_count))
            if delay and delay > 0:
                time.sleep(min(delay, 0.2))
    finally:
        entry_emitted.disconnect(on_emit)
        entry_skipped.disconnect(on_skip)

    kinds = [kind for kind, *_ in after]
    assert kinds == ["emitted", "skipped", "skipped", "skipped"], after
    emitted_id = decisions[0][2]
    assert [e.task_id for e in sched.ccs_coordinator.ledger.entries["queued"]] == [emitted_id]
    assert all(blocker == emitted_id for _, _, blocker in decisions[1:]), decisions
    # every due run counts once, sent or skipped (SingletonScheduler counts due runs)
    assert [count for *_, count in after] == [1, 2, 3, 4], after
    for (_, decided, _, _), (_, _, last_run_at, _) in itertools.pairwise(after):
        # the run was reserved after the previous decision: last_run_at moved to it
        assert last_run_at > decided, after
    for (_, _, earlier, _), (_, _, later, _) in itertools.pairwise(after):
        # ... and the next due run came one period later, not at once
        assert later - earlier >= period - 0.01, after
    for _, decided, last_run_at, _ in after:
        assert last_run_at <= decided, after


def test_emission_is_in_the_journal_before_it_is_published(scheduler):
    from celery.signals import before_task_publish

    from ccs_beat.stores.file import journal_path, read_journal
    _, sched = scheduler
    seen_at_publish: list[tuple[str, list[str]]] = []

    def look(sender=None, headers=None, **_):
        ids = [r["emission"]["task_id"] for r in read_journal(journal_path(
            sched.schedule_filename)) if "emission" in r]
        seen_at_publish.append((headers["id"], ids))

    before_task_publish.connect(look, weak=False)
    try:
        tick_until(sched, lambda: seen_at_publish)
    finally:
        before_task_publish.disconnect(look)
    task_id, journal = seen_at_publish[0]
    assert task_id in journal
    sched.tick()                                    # the burst ends: ledger saved
    assert read_journal(journal_path(sched.schedule_filename)) == []
    assert task_id in [e.task_id for e in sched.ccs_coordinator.ledger.entries["queued"]]


def test_a_publish_that_fails_is_withdrawn_so_the_next_run_is_not_blocked(make_cluster,
                                                                           caplog):
    from ccs_beat.stores.file import journal_path, read_journal
    cluster = make_cluster(
        schedule={"broken": {"task": "tests.sleep", "schedule": 0.5, "args": [0],
                             "options": {"singleton": {"expires": 30},
                                         "serializer": "no-such-serializer"}}},
        settings={"ccs_beat_inspect_timeout": 0.3})
    app = cluster.app
    app.conf.beat_schedule = cluster.schedule
    sched = SingletonScheduler(app=app, schedule_filename=str(cluster.dir / "schedule"))
    skipped: list[str] = []

    def on_skip(sender=None, decision=None, **_):
        skipped.append(decision.reason)

    def failures() -> int:
        return sum("No encoder installed" in r.getMessage() for r in caplog.records)
    entry_skipped.connect(on_skip, weak=False)
    try:
        # each due run is judged "emit", journaled, fails to publish, is withdrawn
        tick_until(sched, lambda: failures() >= 3)
        sched.tick()
    finally:
        entry_skipped.disconnect(on_skip)
        sched.close()
    assert skipped == []          # a failed publish never blocks the next run
    assert "broken" not in sched.ccs_coordinator.ledger.entries
    # what a restarted beat would load: nothing outstanding for the entry
    records = read_journal(journal_path(sched.schedule_filename))
    reloaded = SingletonScheduler(app=app, schedule_filename=str(cluster.dir / "schedule"))
    try:
        assert "broken" not in reloaded.ccs_coordinator.ledger.entries, records
        # each failed publish left exactly two records: its send and its withdrawal
        assert failures() >= 3
        assert reloaded.ccs_coordinator.ledger.seq == 2 * failures(), (failures(), records)
    finally:
        reloaded.close()
