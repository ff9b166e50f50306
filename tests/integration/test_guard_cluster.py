"""The worker guard on a real cluster: of identical guarded tasks published at
the same moment from different processes, exactly one body runs.

Four prefork workers (concurrency 2) share the queue. Each burst is three
copies of ``tests.guarded`` with the same arguments, sent at the same agreed
instant by three publisher processes (``delay``, ``apply_async`` and
``send_task`` by name). The body records its start and end; the guard reports
every duplicate it turns away as a decision event (``Proc.decisions``).
"""

from __future__ import annotations

import collections
import time

from celery.result import AsyncResult

from ccs_beat.events import DecisionEvent
from tests.conftest import BROKERS, require_broker
from tests.integration.harness import Cluster, assert_no_overlap, wait_until

#: per transport: guard settings (D >= T + 2 * margin), bursts, body seconds and
#: seconds between bursts (on Redis/RabbitMQ at most two bursts, six tasks, on
#: the eight slots).
#: Loopback RabbitMQ/Redis answer in milliseconds, so D and T are scaled down.
#: The filesystem transport polls folders, and with four workers and their pool
#: processes on two CPUs a broadcast can take over a second to be answered: it
#: gets a longer T (a reply later than T is the guard's known limit). Its
#: worker loop is synchronous, so a worker that is handing a prefetched task to
#: a full pool answers nothing until a slot frees: bursts there do not overlap,
#: and each worker has more slots (4) than a burst has copies.
PLAN = {
    "redis": ({"ccs_beat_guard_delay": 0.6, "ccs_beat_guard_timeout": 0.3,
               "ccs_beat_guard_margin": 0.15}, 50, 1.5, 1.2),
    "amqp": ({"ccs_beat_guard_delay": 0.6, "ccs_beat_guard_timeout": 0.3,
              "ccs_beat_guard_margin": 0.15}, 50, 1.5, 1.2),
    "filesystem": ({"ccs_beat_guard_delay": 3.0, "ccs_beat_guard_timeout": 2.0,
                    "ccs_beat_guard_margin": 0.5}, 5, 3.0, 7.0),
}
#: pool processes per worker (four prefork workers each)
CONCURRENCY = {"redis": 2, "amqp": 2, "filesystem": 4}
COPIES = 3


def step_asides(cluster, workers) -> dict[str, DecisionEvent]:
    """Turned-away duplicates: task id -> the guard's step-aside decision."""
    found = {}
    for proc in workers:
        for event in proc.decisions():
            if (event.source, event.action, event.task) == ("guard", "step_aside",
                                                            "tests.guarded"):
                found[event.task_id] = event
    return found


def test_exactly_one_of_three_identical_guarded_tasks_runs_in_every_burst(make_cluster, broker):
    settings, bursts, body, interval = PLAN[broker]
    backend = BROKERS["redis"][0] if broker == "redis" else None
    cluster = make_cluster(settings=settings, backend=backend)
    workers = [cluster.start_worker(f"w{i}", concurrency=CONCURRENCY[broker], wait=False)
               for i in range(4)]
    cluster.wait_for_workers([cluster.hostname(f"w{i}") for i in range(4)], timeout=90)

    published = cluster.publish_bursts(COPIES, bursts, interval, body)
    assert len(published) == COPIES * bursts

    def settled() -> bool:
        return (len(cluster.finished_runs()) >= bursts
                and len(step_asides(cluster, workers)) >= (COPIES - 1) * bursts)
    try:
        wait_until(settled, 60, interval=0.5, what="every burst to run once and skip the rest")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: {len(cluster.finished_runs())} finished runs, "
            f"{len(step_asides(cluster, workers))} skips for {bursts} bursts; "
            f"last worker log:\n{workers[0].text()[-4000:]}") from None

    runs = cluster.runs()
    by_burst = collections.defaultdict(list)
    for run in runs:
        by_burst[run.tag].append(run)
    sent = collections.defaultdict(set)
    for item in published:
        sent[item["burst"]].add(item["id"])

    assert sorted(by_burst) == sorted(sent), "some burst never ran"
    ran_twice = {tag: [r.id for r in rs] for tag, rs in by_burst.items() if len(rs) != 1}
    assert not ran_twice, f"bursts that ran more than once: {ran_twice}"
    for tag, rs in by_burst.items():
        assert_no_overlap(rs)
        assert rs[0].id in sent[tag]
        assert rs[0].stamp and rs[0].stamp.get("key") and rs[0].stamp.get("sent_at"), rs[0]

    skipped = step_asides(cluster, workers)
    # a duplicate steps aside within D + T (plus scheduling slack on two CPUs)
    bound = (settings.get("ccs_beat_guard_delay", 1.5) + settings.get("ccs_beat_guard_timeout", 1.0)
             + 0.5)
    slow = {i: e.took for i, e in skipped.items() if e.took is None or e.took > bound}
    assert not slow, f"duplicates that took longer than {bound:g}s to step aside: {slow}"
    winners = {rs[0].id for rs in by_burst.values()}
    losers = {i for ids in sent.values() for i in ids} - winners
    assert set(skipped) == losers
    for tag, ids in sent.items():
        winner = by_burst[tag][0].id
        for loser in ids - {winner}:
            assert skipped[loser].blocker and skipped[loser].blocker.task_id == winner, (
                tag, loser, skipped[loser])

    if backend:
        for tag, ids in sent.items():
            winner = by_burst[tag][0].id
            for loser in ids - {winner}:
                result = AsyncResult(loser, app=cluster.app)
                assert result.state == "SKIPPED"
                assert result.info["winner"] == winner
            assert AsyncResult(winner, app=cluster.app).state == "SUCCESS"


def test_a_solo_pool_worker_warns_that_its_guarded_tasks_cannot_be_seen(tmp_path):
    cluster = Cluster(BROKERS["filesystem"][0], tmp_path)
    try:
        solo = cluster.start_worker("solo", pool="solo", concurrency=1)
        prefork = cluster.start_worker("prefork", concurrency=1)
        wait_until(lambda: "solo pool" in solo.text(), 30, what="the solo-pool warning")
        warning = next(line for line in solo.text().splitlines() if "solo pool" in line)
        assert "WARNING" in warning and "tests.guarded" in warning
        assert "solo pool" not in prefork.text()
    finally:
        cluster.close()


def test_a_duplicate_chain_stops_at_its_guarded_task_and_the_winners_chain_goes_on(tmp_path):
    # one transport is enough for the chain semantics; Redis also gives the result backend
    redis = require_broker("redis")
    cluster = Cluster(redis, tmp_path, settings=PLAN["redis"][0], backend=redis)
    try:
        _run_duplicate_chains(cluster)
    finally:
        cluster.close()


def _run_duplicate_chains(cluster) -> None:
    workers = [cluster.start_worker(f"w{i}", concurrency=2, wait=False) for i in range(2)]
    cluster.wait_for_workers([cluster.hostname(f"w{i}") for i in range(2)])

    def chain():
        first = cluster.app.signature("tests.guarded", args=[2.0], kwargs={"tag": "chain"})
        then = cluster.app.signature("tests.sleep", args=[0.1], kwargs={"tag": "after"},
                                     immutable=True)
        return (first | then).apply_async()

    results = [chain(), chain()]   # this process does not know the task: clock-only stamp
    wait_until(lambda: len(cluster.finished_runs("after")) >= 1
               and len(step_asides(cluster, workers)) >= 1, 30,
               what="one chain to finish and the other to stop")
    time.sleep(1.0)   # room for a wrongly continued chain to show up

    assert len(cluster.runs("chain")) == 1
    assert len(cluster.runs("after")) == 1
    winner = cluster.runs("chain")[0].id
    loser = next(r.parent.id for r in results if r.parent.id != winner)
    assert AsyncResult(loser, app=cluster.app).state == "SKIPPED"
    assert {r.state for r in results} == {"SUCCESS", "PENDING"}
