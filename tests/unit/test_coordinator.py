"""The coordinator's own logic: entry validation, message options, verdicts.

Cluster reads are replaced by a canned :class:`Snapshot` (our own data type);
everything that talks to a broker is covered by tests/integration.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.beat import BeatLazyFunc, ScheduleEntry
from celery.schedules import crontab, schedstate, schedule

from ccs_beat import ConfigurationError
from ccs_beat.coordinator import Coordinator
from ccs_beat.identity import task_key
from ccs_beat.ledger import Ledger
from ccs_beat.snapshot import SeenTask, Snapshot, WorkerView


class CannedReader:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.reads = 0

    def read(self, names=None, ids=None) -> Snapshot:
        self.reads += 1
        return self.snap

    def close(self) -> None:
        pass


@pytest.fixture
def app() -> Celery:
    return Celery("t", broker="memory://", set_as_current=False)


def make_entry(app, name="gc", every=60.0, args=(1,), kwargs=None, options=None):
    return ScheduleEntry(name=name, task="blobs.gc", schedule=schedule(timedelta(seconds=every)),
                         args=args, kwargs=kwargs or {}, options=options or {}, app=app)


def coordinator(app, snap=None) -> Coordinator:
    reader = CannedReader(snap or Snapshot(taken_at=0, workers={
        "w1": WorkerView(hostname="w1", tasks=(), now=0.0, peers=None)}))
    return Coordinator(app, sender=None, reader=reader)


def test_validate_lists_every_bad_entry_at_once(app):
    entries = {
        "a": make_entry(app, "a", options={"singleton": "skipp"}),
        "b": make_entry(app, "b", args=({1, 2},)),
        "c": make_entry(app, "c", options={"singleton": {"key": "nope"}}),
        "ok": make_entry(app, "ok"),
    }
    with pytest.raises(ConfigurationError) as info:
        coordinator(app).validate(entries)
    text = str(info.value)
    assert "'a'" in text and "'skipp'" in text
    assert "'b'" in text and "args[0]" in text
    assert "'c'" in text and "'nope'" in text
    assert "'ok'" not in text


def test_validate_does_not_call_lazy_arguments(app):
    calls = []
    lazy = BeatLazyFunc(lambda: calls.append(1) or 5)
    coordinator(app).validate({"lazy": make_entry(app, "lazy", args=(lazy,))})
    assert calls == []


def test_prepared_options_drop_singleton_and_carry_expiry_and_stamp(app):
    ccs = coordinator(app)
    entry = make_entry(app, every=60.0, options={"singleton": True, "queue": "q",
                                                 "headers": {"mine": 1}})
    verdict = ccs.judge(entry)
    assert verdict.emit

    sending, expires_at = ccs.prepare(entry, verdict)

    assert "singleton" not in sending.options and sending.options["queue"] == "q"
    assert 58.5 <= sending.options["expires"] <= 59.0       # next run less min(1 s, 10 %)
    assert sending.options["headers"]["mine"] == 1
    stamp = sending.options["headers"]["ccs_beat"]
    assert stamp["key"] == verdict.key == task_key("blobs.gc", [1], {})
    assert stamp["entry"] == "gc" and expires_at is not None
    assert "singleton" in entry.options                     # the entry itself is untouched


@pytest.mark.parametrize(("every", "low", "high"), [(1.0, 0.85, 0.9), (5.0, 4.45, 4.5),
                                                     (3600.0, 3598.5, 3599.0)])
def test_default_expiry_is_the_time_to_the_next_run_less_a_margin(app, every, low, high):
    ccs = coordinator(app)
    entry = make_entry(app, every=every)
    verdict = ccs.judge(entry)
    sending, _ = ccs.prepare(entry, verdict)
    assert low <= sending.options["expires"] <= high


class SlowReader(CannedReader):
    """A cluster read that takes ``seconds`` (the first read of a beat waits
    its whole timeout while it learns who the workers are)."""

    def __init__(self, snap: Snapshot, seconds: float) -> None:
        super().__init__(snap)
        self.seconds = seconds

    def read(self, names=None, ids=None) -> Snapshot:
        time.sleep(self.seconds)
        return super().read(names, ids)


def test_default_expiry_counts_from_when_beat_took_the_run_up_not_from_the_send(app):
    # every 2 s; the read takes 0.5 s: the message must be gone by the next
    # due time (2 s after the run was taken up), not 2 s after the send
    snap = Snapshot(taken_at=0, workers={"w1": WorkerView("w1", (), 0.0, None)})
    ccs = Coordinator(app, sender=None, reader=SlowReader(snap, 0.5))
    entry = make_entry(app, every=2.0)
    taken_up = time.time()
    verdict = ccs.judge(entry)
    sending, expires_at = ccs.prepare(entry, verdict)
    assert expires_at is not None and expires_at <= taken_up + 2.0
    assert 1.2 <= sending.options["expires"] <= 1.35      # 2 s - 0.5 s read - 10 %


def test_a_run_decided_after_its_period_still_expires_before_the_run_after(app):
    # every 1 s; a beat's first read waits its whole 1-s timeout: the next
    # due time has passed when the message goes out, so it must expire before
    # the one after (not be sent without an expiry)
    snap = Snapshot(taken_at=0, workers={"w1": WorkerView("w1", (), 0.0, None)})
    ccs = Coordinator(app, sender=None, reader=SlowReader(snap, 1.1))
    entry = make_entry(app, every=1.0)
    verdict = ccs.judge(entry)
    sending, expires_at = ccs.prepare(entry, verdict)
    assert expires_at is not None and 0.8 <= sending.options["expires"] <= 0.9


def test_an_unseen_emission_a_worker_reports_done_no_longer_blocks(app):
    # the emission ran between two reads (a short body): no read saw it, but
    # the worker that received it says it no longer holds it
    entry = make_entry(app, every=60.0, options={"singleton": True})
    ccs = coordinator(app)
    verdict = ccs.judge(entry)
    assert verdict.emit
    sending, expires_at = ccs.prepare(entry, verdict)
    ccs._write_ahead(entry, sending, verdict, expires_at)
    task_id = sending.options["task_id"]
    ccs.end_burst()
    assert not ccs.judge(entry).emit                      # unseen, not expired: queued
    assert ccs.ledger.unseen() == [task_id]

    ccs.reader.snap = Snapshot(taken_at=0, workers={
        "w1": WorkerView("w1", (), 0.0, None, done=frozenset({task_id}))})
    ccs.end_burst()
    assert ccs.judge(entry).emit
    assert ccs.ledger.unseen() == []


def test_crontab_entries_expire_before_their_next_run(app):
    ccs = coordinator(app)
    entry = ScheduleEntry(name="nightly", task="blobs.gc", schedule=crontab(minute=0, hour=3),
                          args=(), kwargs={}, options={}, app=app)
    verdict = ccs.judge(entry)
    sending, _ = ccs.prepare(entry, verdict)
    assert 0 < sending.options["expires"] <= 24 * 3600


class DueAgainAlready(schedule):
    """A schedule that says the entry is due again at once (beat fell behind)."""

    def is_due(self, last_run_at):
        return schedstate(True, 0)


def test_an_entry_due_again_already_is_sent_without_expiry_and_says_so(app, caplog):
    entry = ScheduleEntry(name="behind", task="blobs.gc", schedule=DueAgainAlready(60.0),
                          args=(1,), app=app)
    ccs = coordinator(app)
    verdict = ccs.judge(entry)
    with caplog.at_level("WARNING", logger="ccs_beat"):
        sending, expires_at = ccs.prepare(entry, verdict)
    assert "expires" not in sending.options and expires_at is None
    assert "beat entry 'behind' is due again already" in caplog.text


def test_policy_expiry_wins_and_an_entrys_own_expiry_is_kept_otherwise(app):
    ccs = coordinator(app)
    own = make_entry(app, "own", options={"expires": 42})
    policy = make_entry(app, "policy", options={"expires": 42, "singleton": {"expires": 7}})
    for entry, expected in ((own, 42.0), (policy, 7.0)):
        verdict = ccs.judge(entry)
        sending, _ = ccs.prepare(entry, verdict)
        assert sending.options["expires"] == expected


def test_an_entrys_own_iso_8601_expiry_is_kept_and_a_garbled_one_is_named(app, caplog):
    ccs = coordinator(app)
    at = time.time() + 30
    iso = make_entry(app, "iso", options={"expires": datetime.fromtimestamp(
        at, tz=timezone.utc).isoformat()})
    verdict = ccs.judge(iso)
    sending, expires_at = ccs.prepare(iso, verdict)
    assert 29 <= sending.options["expires"] <= 30 and abs(expires_at - at) < 1

    garbled = make_entry(app, "garbled", every=60.0, options={"expires": "soon"})
    verdict = ccs.judge(garbled)
    with caplog.at_level("WARNING", logger="ccs_beat"):
        sending, _ = ccs.prepare(garbled, verdict)
    assert "beat entry 'garbled': expires 'soon' is neither seconds" in caplog.text
    assert 58.5 <= sending.options["expires"] <= 59.0      # the default


def test_a_naive_iso_8601_expiry_is_read_in_the_apps_zone_as_celery_reads_it(app, monkeypatch):
    # beat's host in Tokyo, the app in UTC (Celery's default): the message
    # must live the two hours Celery gives it, not expire on arrival
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        at = datetime.now(timezone.utc) + timedelta(hours=2)
        entry = make_entry(app, "iso", options={"expires": at.replace(tzinfo=None).isoformat()})
        ccs = coordinator(app)
        verdict = ccs.judge(entry)
        sending, _ = ccs.prepare(entry, verdict)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert 7190 <= sending.options["expires"] <= 7200


def test_allow_entries_are_sent_unstamped_without_a_cluster_read(app):
    ccs = coordinator(app)
    entry = make_entry(app, options={"singleton": False})
    verdict = ccs.judge(entry)
    sending, expires_at = ccs.prepare(entry, verdict)
    assert verdict.emit and verdict.key is None and ccs.reader.reads == 0
    assert "headers" not in sending.options and expires_at is None
    assert "singleton" not in sending.options


def test_an_option_that_turned_invalid_at_run_time_falls_back_to_plain_beat(app, caplog):
    ccs = coordinator(app)
    entry = make_entry(app, options={"singleton": "sometimes"})
    verdict = ccs.judge(entry)
    assert verdict.emit and verdict.decision is None
    assert "beat entry 'gc'" in caplog.text and "'sometimes'" in caplog.text


def test_lazy_arguments_that_cannot_be_keyed_fall_back_to_plain_beat(app, caplog):
    ccs = coordinator(app)
    entry = make_entry(app, args=(BeatLazyFunc(lambda: {1, 2}),))
    verdict = ccs.judge(entry)
    assert verdict.emit and verdict.key is None
    assert "beat entry 'gc'" in caplog.text and "args[0]" in caplog.text


def test_identical_task_on_a_worker_blocks_and_one_read_serves_the_burst(app):
    running = SeenTask(id="r1", name="blobs.gc", args=[1], kwargs={}, state="active",
                       worker="w1", time_start=0.0, worker_now=3.0)
    snap = Snapshot(taken_at=0, workers={"w1": WorkerView("w1", (running,), 3.0, None)})
    ccs = coordinator(app, snap)

    same = ccs.judge(make_entry(app, "same", args=(1,)))
    other = ccs.judge(make_entry(app, "other", args=(2,)))

    assert not same.emit and same.decision.blocker.task_id == "r1"
    assert other.emit
    assert ccs.reader.reads == 1
    ccs.end_burst()
    ccs.judge(make_entry(app, "same", args=(1,)))
    assert ccs.reader.reads == 2


def due_entry(app, name, overdue):
    """An entry due every 60 s whose due time passed ``overdue`` seconds ago."""
    entry = make_entry(app, name)
    entry.last_run_at = app.now() - timedelta(seconds=60 + overdue)
    return entry


def test_a_long_burst_decides_entries_due_before_the_read_from_that_read(app, monkeypatch):
    import ccs_beat.coordinator as module
    clock = {"mono": 1000.0}
    monkeypatch.setattr(module.time, "monotonic", lambda: clock["mono"])
    ccs = coordinator(app)
    ccs.judge(due_entry(app, "first", overdue=1))
    clock["mono"] += ccs.settings.burst_max_age + 60    # stock beat is slow at 10,000 entries

    ccs.judge(due_entry(app, "due-before-the-read", overdue=5))
    assert ccs.reader.reads == 1

    ccs.judge(due_entry(app, "due-after-the-read", overdue=-30))
    assert ccs.reader.reads == 2                        # old read, newer due time: read again


def test_a_read_older_than_burst_max_age_is_refreshed_for_an_entry_due_since(app, monkeypatch):
    import ccs_beat.coordinator as module
    clock = {"mono": 1000.0}
    monkeypatch.setattr(module.time, "monotonic", lambda: clock["mono"])
    ccs = coordinator(app)
    ccs.judge(due_entry(app, "a", overdue=1))
    clock["mono"] += ccs.settings.burst_max_age / 2
    ccs.judge(due_entry(app, "b", overdue=-0.5))        # became due after the read, read young
    assert ccs.reader.reads == 1
    clock["mono"] += ccs.settings.burst_max_age
    ccs.judge(due_entry(app, "c", overdue=-0.5))
    assert ccs.reader.reads == 2


@pytest.mark.parametrize(("field", "value", "what"), [
    ("args", 5, "args is 5 (a int), not a list"),
    ("kwargs", [1], "kwargs is [1] (a list), not a dict"),
    ("options", ["x"], "options is ['x'], not a dict"),
])
def test_an_entry_whose_stored_fields_have_the_wrong_type_is_named_and_never_stops_beat(
        app, caplog, field, value, what):
    # a redbeat entry or a Django row can hold any JSON where a list or dict belongs
    entry = make_entry(app, "odd", options={"singleton": {"key": "name"}})
    setattr(entry, field, value)
    ccs = coordinator(app)
    with caplog.at_level("ERROR", logger="ccs_beat"):
        verdict = ccs.judge(entry)
    assert verdict.decision is None
    assert "beat entry 'odd'" in caplog.text and what in caplog.text
    with pytest.raises(ConfigurationError, match=r"beat entry 'odd'"):
        ccs.validate({"odd": entry})


class BrokenLedger(Ledger):
    """A ledger whose lookup fails (a bug, or damage nothing else caught)."""

    def outstanding(self, *args, **kwargs):
        raise TypeError("unhashable type: 'list'")


@pytest.mark.parametrize(("on_unknown", "emits"), [("skip", False), ("emit", True)])
def test_an_error_while_deciding_is_left_to_on_unknown(app, on_unknown, emits):
    ccs = coordinator(app)
    ccs.ledger = BrokenLedger()
    entry = make_entry(app, options={"singleton": {"on_unknown": on_unknown}})

    verdict = ccs.judge(entry)

    assert verdict.emit is emits
    assert verdict.decision is not None and verdict.decision.unknown
    assert "error while deciding" in verdict.decision.detail


def test_a_forged_seen_on_in_the_ledger_still_blocks_the_entry(app):
    # a ledger written by someone else: an emission "seen on" a list
    ccs = coordinator(app)
    entry = make_entry(app, options={"singleton": True})
    key = task_key("blobs.gc", [1], {})
    ccs.ledger = Ledger.from_state({"version": 1, "seq": 0, "entries": {"gc": [
        {"task_id": "forged", "key": key, "sent_at": 0.0, "expires_at": 4e9,
         "seen_on": ["w1"], "seen_at": 1.0}]}})

    verdict = ccs.judge(entry)

    assert not verdict.emit and verdict.decision.blocker.task_id == "forged"


@pytest.mark.parametrize("singleton", [False, True])
def test_a_stamp_that_came_with_the_entrys_headers_is_never_sent(app, singleton):
    # a row's headers are written by whoever may add a task: a forged stamp
    # would make unrelated tasks look identical to the worker guard
    forged = {"v": 1, "key": "victim:key", "sent_at": 0.0}
    ccs = coordinator(app)
    entry = make_entry(app, options={"singleton": singleton,
                                     "headers": {"ccs_beat": forged, "mine": 1}})
    verdict = ccs.judge(entry)

    sending, _ = ccs.prepare(entry, verdict)

    headers = sending.options["headers"]
    assert headers["mine"] == 1 and headers.get("ccs_beat") != forged
    assert ("ccs_beat" in headers) is singleton


class NeverAgain(schedule):
    """A schedule with no next run (django-celery-beat's clocked schedule, once
    its time has passed, says 100,000,000 s)."""

    def is_due(self, last_run_at):
        return schedstate(True, 100_000_000)


def test_an_entry_with_no_next_run_is_sent_without_expiry_and_counted_minutes_not_years(app):
    # a one-off armed again later must not be blocked for years by an
    # emission that ran between two reads
    entry = ScheduleEntry(name="once", task="blobs.gc", schedule=NeverAgain(60.0),
                          args=(1,), app=app)
    ccs = coordinator(app)
    verdict = ccs.judge(entry)

    sending, counted_until = ccs.prepare(entry, verdict)

    assert "expires" not in sending.options
    assert counted_until is not None and counted_until <= time.time() + 300


class FarOff(schedule):
    """Not due, next run in about four years (a crontab on 29 February)."""

    def is_due(self, last_run_at):
        return schedstate(False, 4 * 366 * 86400)


def test_an_entry_whose_next_run_is_merely_far_off_keeps_its_expiry(app):
    entry = ScheduleEntry(name="leap", task="blobs.gc", schedule=FarOff(60.0), args=(1,),
                          app=app)
    ccs = coordinator(app)
    verdict = ccs.judge(entry)

    sending, counted_until = ccs.prepare(entry, verdict)

    assert sending.options["expires"] > 4 * 365 * 86400
    assert counted_until > time.time() + 365 * 86400


def test_a_malformed_task_in_a_reply_leaves_the_other_entries_decided_normally(app):
    # a non-Python producer's blobs.report with args=5 sits beside a running
    # blobs.gc on the same worker: gc is still blocked by its identical task,
    # and only report's decision is left to on_unknown
    from ccs_beat.replies import parse_reply
    body = {"ccs": 1, "now": 1000.0, "peers": None, "reserved": [], "scheduled": [],
            "active": [{"id": "odd", "name": "blobs.report", "args": 5, "kwargs": {}},
                       {"id": "running", "name": "blobs.gc", "args": [1], "kwargs": {},
                        "time_start": 990.0}]}
    ccs = coordinator(app, Snapshot(taken_at=0, workers={"w1": parse_reply("w1", body)}))
    gc = make_entry(app, options={"singleton": True})
    report = ScheduleEntry(name="report", task="blobs.report", schedule=schedule(60.0),
                           args=(), options={"singleton": {"on_unknown": "skip"}}, app=app)

    gc_verdict, report_verdict = ccs.judge(gc), ccs.judge(report)

    assert not gc_verdict.emit and gc_verdict.decision.blocker.task_id == "running"
    assert not gc_verdict.decision.unknown
    assert not report_verdict.emit and report_verdict.decision.unknown
    assert "odd (blobs.report)" in report_verdict.decision.detail


def test_an_entry_without_an_option_takes_the_tasks_declared_policy(app):
    # the task says its identity is its name: beat's check and stamp use it,
    # so beat's emission and a .delay() of the task are recognised as identical
    from ccs_beat import SingletonTask
    from ccs_beat.replies import parse_reply

    @app.task(name="blobs.gc", base=SingletonTask, singleton={"key": "name"})
    def gc(n):
        return n

    body = {"ccs": 1, "now": 1000.0, "peers": None, "reserved": [], "scheduled": [],
            "active": [{"id": "delayed", "name": "blobs.gc", "args": [2], "kwargs": {},
                        "time_start": 990.0}]}
    ccs = coordinator(app, Snapshot(taken_at=0, workers={"w1": parse_reply("w1", body)}))
    entry = make_entry(app, args=(1,))

    verdict = ccs.judge(entry)

    assert verdict.policy.key.kind == "name"
    assert verdict.key == task_key("blobs.gc", [2], {}, gc.ccs_policy().key)
    assert not verdict.emit and verdict.decision.blocker.task_id == "delayed"


def test_an_entry_option_still_overrides_the_tasks_declared_policy(app):
    from ccs_beat import SingletonTask

    @app.task(name="blobs.declared", base=SingletonTask, singleton={"key": "name"})
    def declared(n):
        return n

    ccs = coordinator(app)
    assert ccs.policy_for("gc", {"singleton": False}, "blobs.declared").checked is False
    assert ccs.policy_for("gc", {"singleton": {"overlap": "buffer_one"}},
                          "blobs.declared").key.kind == "name"   # the rest from the declaration


def _emit(ccs, entry) -> str:
    """What the scheduler does with an entry judged 'emit': prepare, write ahead."""
    verdict = ccs.judge(entry)
    assert verdict.emit, verdict
    sending, expires_at = ccs.prepare(entry, verdict)
    ccs._write_ahead(entry, sending, verdict, expires_at)
    return sending.options["task_id"]


def test_two_entries_with_one_key_due_in_one_burst_emit_once(app):
    # two entries for one job, identity "name": one read serves the burst, so
    # the second is blocked by the first's emission, still in the broker queue
    ccs = coordinator(app)
    first = make_entry(app, "gc", options={"singleton": {"key": "name"}}, args=(1,))
    second = make_entry(app, "gc, by hand", options={"singleton": {"key": "name"}}, args=(2,))

    sent = _emit(ccs, first)
    verdict = ccs.judge(second)

    assert not verdict.emit
    assert verdict.decision.blocker.task_id == sent
    assert verdict.decision.blocker.state == "queued"


def test_an_entry_renamed_while_its_emission_waits_is_still_blocked_by_it(app):
    ccs = coordinator(app)
    sent = _emit(ccs, make_entry(app, "nightly", options={"singleton": True}))
    ccs.ledger.forget(["nightly (renamed)"])        # what a restarted beat does

    verdict = ccs.judge(make_entry(app, "nightly (renamed)", options={"singleton": True}))

    assert not verdict.emit and verdict.decision.blocker.task_id == sent


def everything_is_one(name, args, kwargs):
    """A key function that ignores the task name."""
    return "one"


def test_a_key_function_ignoring_the_name_matches_only_the_entrys_own_task(app):
    # the worker guard compares a task only with requests of its own name (or
    # stamped with its key): beat must agree, or it skips for a task the guard
    # would let run beside it
    app.conf.ccs_beat_key_functions = {"one": "tests.unit.test_coordinator.everything_is_one"}
    entry = make_entry(app, options={"singleton": {"key": "one"}})
    other = SeenTask(id="other", name="blobs.other", args=[1], kwargs={}, state="active",
                     worker="w1", time_start=0.0, worker_now=1.0)
    same = SeenTask(id="same", name="blobs.gc", args=[9], kwargs={}, state="active",
                    worker="w1", time_start=0.0, worker_now=1.0)
    stamped = SeenTask(id="stamped", name="blobs.third", args=[], kwargs={}, state="active",
                       worker="w1", time_start=0.0, worker_now=1.0,
                       stamp={"key": "one", "sent_at": 0.0})
    snap = Snapshot(taken_at=0, workers={"w1": WorkerView("w1", (other,), 1.0, None)})
    assert coordinator(app, snap).judge(entry).emit

    for seen in (same, stamped):
        snap = Snapshot(taken_at=0, workers={"w1": WorkerView("w1", (other, seen), 1.0, None)})
        verdict = coordinator(app, snap).judge(entry)
        assert not verdict.emit and verdict.decision.blocker.task_id == seen.id
