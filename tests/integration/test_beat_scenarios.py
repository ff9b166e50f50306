"""``celery beat -S ccs_beat.SingletonScheduler`` against real workers and brokers.

Every test runs on the filesystem transport, Redis and RabbitMQ (see the
``broker`` fixture). Task bodies record their own start and end times; beat's
decisions are read back from its decision events (``Proc.decisions``).
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from tests.integration.harness import assert_no_overlap, wait_until

pytestmark = pytest.mark.timeout(180)


def entry(seconds: float, tag: str, every: float, singleton=None) -> dict:
    spec = {"task": "tests.sleep", "schedule": every, "args": [seconds],
            "kwargs": {"tag": tag}}
    if singleton is not None:
        spec["options"] = {"singleton": singleton}
    return spec


def test_long_task_every_second_never_overlaps_and_runs_again_after_each_end(make_cluster,
                                                                             broker):
    cluster = make_cluster(schedule={"long": entry(5, "long", every=1.0)})
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    beat = cluster.start_beat()

    wait_until(lambda: len(cluster.finished_runs("long")) >= 2, 40, what="two finished runs")
    time.sleep(1.5)
    cluster.stop(beat)
    runs = cluster.runs("long")

    assert_no_overlap(runs)
    finished = [r for r in runs if r.end is not None]
    for before, after in zip(finished, runs[1:], strict=False):
        # no starvation: the next run starts within a tick or two of the end
        assert after.start - before.end < 3.0, (before, after)
    assert len(beat.skipped("long")) >= 6
    emitted = len(beat.emitted("long"))
    if broker == "filesystem":
        # kombu's filesystem transport can consume a message file its writer has
        # not filled yet, losing that message: allow one emission that never ran
        assert len(runs) <= emitted <= len(runs) + 1
    else:
        assert emitted == len(runs)
    # each emission carried the sender's stamp and an expiry
    assert all(r.stamp and r.stamp["entry"] == "long" and r.stamp["key"].startswith(
        "tests.sleep:") for r in runs)
    assert all(r.expires for r in runs)


def test_skips_while_a_manual_identical_task_runs_but_emits_for_different_args(make_cluster):
    cluster = make_cluster(schedule={
        "same": entry(6, "manual", every=1.0),
        "different": entry(0.2, "different", every=1.0),
    })
    cluster.start_worker("w1", concurrency=3)
    manual_id = cluster.send(6, tag="manual")
    wait_until(lambda: cluster.runs("manual"), 30, what="the manual task to start")
    beat = cluster.start_beat()

    wait_until(lambda: len(beat.skipped("same")) >= 2, 30,
               what="beat to skip the identical entry")
    wait_until(lambda: len(cluster.finished_runs("different")) >= 2, 30,
               what="the entry with other arguments to run")
    cluster.stop(beat)

    manual = next(r for r in cluster.runs("manual") if r.id == manual_id)
    skips = beat.skipped("same")
    assert all(s.blocker and s.blocker.task_id == manual_id for s in skips[:2]), skips[:2]
    assert skips[0].blocker.state == "active"
    assert skips[0].blocker.worker == cluster.hostname("w1")
    # nothing identical started while the manual one ran
    others = [r for r in cluster.runs("manual") if r.id != manual_id]
    assert all(r.start >= (manual.end or time.time()) for r in others), others
    # the different-args entry ran while the manual one was still running
    assert any(r.start < (manual.end or time.time()) for r in cluster.runs("different"))


def test_does_not_emit_again_while_its_emission_waits_in_the_queue_then_emits_after_expiry(
        make_cluster):
    cluster = make_cluster(schedule={"queued": entry(0.1, "queued", every=1.0,
                                                     singleton={"expires": 6})})
    beat = cluster.start_beat()          # no worker: the message stays in the queue

    wait_until(lambda: len(beat.emitted("queued")) >= 2, 30,
               what="a second emission after expiry")
    cluster.stop(beat)
    emitted = beat.emitted("queued")
    between = [s for s in beat.skipped("queued")
               if emitted[0].at < s.at < emitted[1].at]

    assert emitted[1].at - emitted[0].at >= 5.9
    assert len(between) >= 2   # each read waits its full timeout: no worker answers
    assert all(s.reason == "previous_queued" for s in between), between
    assert all(s.blocker and s.blocker.task_id == emitted[0].task_id for s in between)


def test_restarted_beat_still_skips_while_its_emission_runs(make_cluster):
    cluster = make_cluster(schedule={"long": entry(10, "long", every=1.0)})
    cluster.start_worker("w1")
    first = cluster.start_beat("beat1")
    wait_until(lambda: cluster.runs("long"), 30, what="the first run to start")
    cluster.stop(first)

    second = cluster.start_beat("beat2")
    wait_until(lambda: len(second.skipped("long")) >= 3, 30,
               what="the restarted beat to skip")
    cluster.stop(second)

    run = cluster.runs("long")[0]
    assert len(cluster.runs("long")) == 1
    assert second.emitted("long") == [] or \
        second.emitted("long")[0].at >= run.end
    first_skip = second.skipped("long")[0]
    assert first_skip.blocker and first_skip.blocker.task_id == run.id, first_skip


def test_ledger_survives_a_killed_beat_so_a_queued_emission_is_not_sent_twice(make_cluster):
    cluster = make_cluster(schedule={"queued": entry(0.1, "queued", every=1.0,
                                                     singleton={"expires": 60})})
    first = cluster.start_beat("beat1")      # no worker: emissions stay queued
    wait_until(lambda: first.skipped("queued"), 30,
               what="the first beat to skip its own queued emission")
    cluster.stop(first, sig=signal.SIGKILL)
    sent = first.emitted("queued")

    second = cluster.start_beat("beat2")
    wait_until(lambda: len(second.skipped("queued")) >= 2, 30,
               what="the restarted beat to skip")
    cluster.stop(second)

    assert len(sent) == 1
    assert second.emitted("queued") == []
    first_skip = second.skipped("queued")[0]
    assert first_skip.blocker and first_skip.blocker.task_id == sent[0].task_id, first_skip


def test_no_worker_answers_so_on_unknown_decides_and_says_so(make_cluster):
    cluster = make_cluster(schedule={
        "fail-open": entry(0.1, "open", every=1.0, singleton={"on_unknown": "emit"}),
        "fail-closed": entry(0.1, "closed", every=1.0, singleton={"on_unknown": "skip"}),
    })
    beat = cluster.start_beat()
    wait_until(lambda: len(beat.emitted("fail-open")) >= 2
               and len(beat.skipped("fail-closed")) >= 2, 30,
               what="decisions for both entries")
    cluster.stop(beat)

    opened = beat.emitted("fail-open")
    closed = beat.skipped("fail-closed")
    assert beat.emitted("fail-closed") == []
    # no event field names why the read was incomplete: that it was because no
    # worker answered is only in the detail's words
    for event in opened[:2]:
        assert (event.reason, event.on_unknown, event.unknown) == (
            "cluster_unreadable", "emit", True), event
        assert "no worker answered" in event.detail, event
    for event in closed[:2]:
        assert (event.reason, event.on_unknown, event.unknown) == (
            "cluster_unreadable", "skip", True), event
        assert "no worker answered" in event.detail, event


def test_buffer_one_emits_exactly_one_follow_up_right_after_the_long_run_ends(make_cluster):
    # due every 6 s, runs 8 s: the run due at 6 s is remembered and sent when
    # the first run ends at 8 s -- well before the next due time (12 s, less
    # the ~1 s the first cluster read takes), so the follow-up can only come
    # from the buffer, polled every ccs_beat_buffer_poll_interval (1 s)
    cluster = make_cluster(schedule={"buffered": entry(8, "buffered", every=6.0,
                                                       singleton="buffer_one")})
    cluster.start_worker("w1")
    beat = cluster.start_beat()
    wait_until(lambda: len(cluster.finished_runs("buffered")) >= 2, 60,
               what="two finished runs")
    cluster.stop(beat)

    runs = cluster.runs("buffered")
    assert_no_overlap(runs)
    finished = [r for r in runs if r.end is not None]
    emitted = beat.emitted("buffered")
    follow_ups = [e for e in emitted if e.buffered]
    assert follow_ups, "no buffered run was emitted"
    assert {e.task_id for e in follow_ups} <= {r.id for r in runs[1:]}
    # each run is followed at once by the one remembered run, not at the next due time
    for before, after in zip(finished, runs[1:], strict=False):
        assert after.start - before.end < 1.6, (before, after)
    # exactly one emission per run: the skipped due times were not piled up
    assert len(emitted) == len(runs)


def test_workers_without_ccs_beat_are_read_with_stock_inspect(make_cluster):
    cluster = make_cluster(schedule={"long": entry(4, "long", every=1.0)})
    cluster.start_worker("legacy", CCS_TEST_LEGACY_WORKER="1")
    beat = cluster.start_beat()

    def seen_on_legacy() -> list:
        # only the legacy worker's stock replies can say where the run is active
        # (on Celery < 5.7 a skip straight after the slow first read may come
        # from the ledger alone: "previous emission not picked up ... yet")
        return [s for s in beat.skipped("long") if s.reason == "identical_in_cluster"]

    wait_until(lambda: len(seen_on_legacy()) >= 2, 30,
               what="beat to skip using stock inspect")
    cluster.stop(beat)

    run = cluster.runs("long")[0]
    seen = seen_on_legacy()
    assert seen[0].blocker.task_id == run.id, seen[0]
    assert seen[0].blocker.worker == cluster.hostname("legacy"), seen[0]
    assert_no_overlap(cluster.runs("long"))


@pytest.mark.parametrize(("schedule", "settings", "culprits"), [
    ({"nightly": entry(1, "x", 60, singleton={"overlap": "sometimes"})}, {},
     ["nightly", "sometimes"]),
    ({"ok": entry(1, "x", 60)}, {"ccs_beat_inspect_timout": 2}, ["ccs_beat_inspect_timout"]),
    ({"ok": entry(1, "x", 60)}, {"ccs_beat_inspect_timeout": -1}, ["ccs_beat_inspect_timeout",
                                                                   "-1"]),
    ({"keyed": entry(1, "x", 60, singleton={"key": "no_such_module.func"})}, {},
     ["keyed", "no_such_module.func"]),
], ids=["unknown-overlap", "unknown-setting", "negative-timeout", "bad-key-function"])
def test_bad_configuration_stops_beat_with_an_error_naming_the_culprit(
        make_cluster, schedule, settings, culprits):
    cluster = make_cluster(schedule=schedule, settings=settings)
    result = cluster.run_beat_to_exit()
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert "ConfigurationError" in output
    for culprit in culprits:
        assert culprit in output


def test_an_emission_that_ran_between_two_reads_does_not_block_the_next_run(make_cluster):
    # expires outlasts the period (a user's choice): the message of one run is
    # not expired yet at the next due time. It ran in 0.1 s, between two of
    # beat's reads, so no read saw it -- but its worker remembers it took it
    cluster = make_cluster(schedule={"quick": {
        "task": "tests.sleep", "schedule": 2.0, "args": [0.1], "kwargs": {"tag": "quick"},
        "options": {"expires": 3.5, "singleton": True}}})
    cluster.start_worker("w1")
    beat = cluster.start_beat()

    wait_until(lambda: len(cluster.finished_runs("quick")) >= 5, 40, what="five runs")
    cluster.stop(beat)

    queued = [s for s in beat.skipped("quick") if s.reason == "previous_queued"]
    assert not queued, queued
    runs = cluster.finished_runs("quick")
    for before, after in itertools.pairwise(runs):
        assert after.start - before.start < 3.0, (before, after)   # no due time skipped
