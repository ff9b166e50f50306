"""The ledger: when is an emission still outstanding?"""

from __future__ import annotations

import json

import pytest

from ccs_beat.ledger import MAX_PER_ENTRY, Emission, Ledger, Status, assess
from ccs_beat.snapshot import SeenTask, Snapshot, WorkerView

NOW = 1_000_000.0


def snapshot(*tasks: SeenTask, workers=("w1",), missing=(), failure=None) -> Snapshot:
    views = {w: WorkerView(hostname=w, tasks=tuple(t for t in tasks if t.worker == w),
                           now=NOW, peers=None) for w in workers}
    return Snapshot(taken_at=NOW, workers=views, missing=frozenset(missing), failure=failure)


def seen(task_id: str, worker: str = "w1", state: str = "active") -> SeenTask:
    return SeenTask(id=task_id, name="t", args=[], kwargs={}, state=state, worker=worker,
                    time_start=NOW - 5, worker_now=NOW)


def emission(task_id: str = "a", *, expires_at=NOW + 60, seen_on=None) -> Emission:
    return Emission(task_id=task_id, key="t:k", sent_at=NOW - 10, expires_at=expires_at,
                    seen_on=seen_on)


def test_unseen_unexpired_emission_is_queued():
    assert assess(emission(), snapshot(), NOW)[0] is Status.QUEUED


def test_unseen_emission_is_done_once_its_expiry_passed():
    assert assess(emission(expires_at=NOW - 1), snapshot(), NOW)[0] is Status.DONE


def test_emission_visible_on_a_worker_is_seen():
    status, task = assess(emission(), snapshot(seen("a", state="reserved")), NOW)
    assert status is Status.SEEN and task.state == "reserved"


def test_seen_then_gone_from_a_worker_that_answered_is_done():
    assert assess(emission(seen_on="w1"), snapshot(), NOW)[0] is Status.DONE


def test_seen_on_a_silent_worker_is_unknown():
    snap = snapshot(workers=("w2",), missing=("w1",))
    assert assess(emission(seen_on="w1"), snap, NOW)[0] is Status.UNKNOWN


def test_seen_when_the_broker_failed_is_unknown():
    snap = Snapshot(taken_at=NOW, failure="ConnectionRefusedError()")
    assert assess(emission(seen_on="w1"), snap, NOW)[0] is Status.UNKNOWN


def test_seen_on_a_worker_presumed_gone_is_done():
    # w1 is neither answering nor expected any more
    assert assess(emission(seen_on="w1"), snapshot(workers=("w2",)), NOW)[0] is Status.DONE


def test_ready_result_ends_an_emission_before_anything_else():
    snap = snapshot(seen("a"))
    assert assess(emission(), snap, NOW, result_ready=lambda _: True)[0] is Status.DONE
    assert assess(emission(), snap, NOW, result_ready=lambda _: False)[0] is Status.SEEN
    assert assess(emission(), snapshot(), NOW, result_ready=lambda _: None)[0] is Status.QUEUED


def test_outstanding_forgets_finished_emissions_and_records_where_one_was_seen():
    ledger = Ledger()
    ledger.record("gc", emission("old", expires_at=NOW - 1))
    ledger.record("gc", emission("new"))
    ledger.dirty = False

    out = ledger.outstanding("t:k", snapshot(seen("new", worker="w1")), NOW)

    assert [(e.task_id, s) for e, s, _ in out] == [("new", Status.SEEN)]
    assert ledger.entries["gc"][0].seen_on == "w1"
    assert ledger.dirty


def test_an_entry_with_nothing_outstanding_leaves_the_ledger():
    ledger = Ledger()
    ledger.record("gc", emission(expires_at=NOW - 1))
    assert ledger.outstanding("t:k", snapshot(), NOW) == []
    assert "gc" not in ledger.entries


def test_ledger_keeps_at_most_a_bounded_number_of_emissions_per_entry():
    ledger = Ledger()
    for i in range(MAX_PER_ENTRY + 5):
        ledger.record("gc", emission(str(i)))
    ids = [e.task_id for e in ledger.entries["gc"]]
    assert len(ids) == MAX_PER_ENTRY and ids[-1] == str(MAX_PER_ENTRY + 4)


def test_state_round_trips_through_json():
    ledger = Ledger()
    ledger.record("gc", emission("a", seen_on="w1"))
    ledger.record("users", emission("b", expires_at=None))
    ledger.set_pending("users", True)

    again = Ledger.from_state(json.loads(json.dumps(ledger.to_state())))

    assert again.entries == ledger.entries and again.pending == {"users"}


def test_damaged_state_loses_only_the_damaged_part():
    state = {"version": 1, "entries": {"gc": [{"task_id": "a", "key": "k", "sent_at": 1.0},
                                              {"key": "missing id"}, "garbage"],
                                       "bad": "not a list"},
             "pending": "not a list"}
    ledger = Ledger.from_state(state)
    assert [e.task_id for e in ledger.entries["gc"]] == ["a"]
    assert ledger.pending == set()
    for junk in (None, "x", {"version": 99}, {"version": 1, "entries": 5}):
        assert Ledger.from_state(junk).entries == {}


@pytest.mark.parametrize("sent_at", [10**400, float("inf"), float("nan"), "1e999"])
def test_a_time_no_clock_can_hold_is_damage_not_a_crash(sent_at):
    # the ledger lives in a file, a table or Redis: anyone who can write there
    # must not be able to stop beat
    state = {"version": 1, "entries": {"gc": [{"task_id": "a", "key": "k", "sent_at": 1.0},
                                              {"task_id": "b", "key": "k", "sent_at": sent_at}]}}
    assert [e.task_id for e in Ledger.from_state(state).entries["gc"]] == ["a"]
    ledger = Ledger()
    record = {"seq": 1, "entry": "gc",
              "emission": {"task_id": "b", "key": "k", "sent_at": sent_at}}
    assert ledger.replay([record]) == 0 and not ledger.entries


@pytest.mark.parametrize("seq", [2**63 - 1, 2**62 - 1, 2**53, 10**30, -1, True])
def test_a_sequence_number_the_journal_cannot_store_is_damage(seq):
    # a forged seq of 2**63 - 1 would make every journal write overflow its
    # column, silently switching the write-ahead journal off
    ledger = Ledger.from_state({"version": 1, "seq": seq, "entries": {}})
    assert ledger.seq == 0
    assert ledger.note_sending("gc", emission())["seq"] == 1
    assert Ledger().replay([{"seq": seq, "entry": "gc", "emission": {
        "task_id": "b", "key": "k", "sent_at": 1.0}}]) == 0


def test_forget_drops_what_entries_that_left_the_schedule_can_no_longer_block():
    ledger = Ledger()
    ledger.record("gone", emission("expired", expires_at=NOW - 1))
    ledger.record("kept", emission())
    ledger.set_pending("gone", True)
    ledger.forget(["kept"], now=NOW)
    assert set(ledger.entries) == {"kept"} and ledger.pending == set()


def test_forget_keeps_a_removed_entrys_emission_that_may_still_be_queued():
    # the entry was renamed, or another entry has its key: the message may
    # still wait in the broker queue until it expires
    ledger = Ledger()
    ledger.record("old name", emission("queued", expires_at=NOW + 60))
    ledger.record("no expiry", Emission(task_id="q2", key="t:k", sent_at=NOW - 10))
    ledger.record("ancient", Emission(task_id="q3", key="t:k", sent_at=NOW - 2 * 86400))
    ledger.forget(["new name"], now=NOW)
    assert set(ledger.entries) == {"old name", "no expiry"}
    assert {e.task_id for e, _, _ in ledger.outstanding("t:k", snapshot(), NOW)} == \
        {"queued", "q2"}


def test_outstanding_emissions_are_looked_up_by_key_whichever_entry_sent_them():
    ledger = Ledger()
    ledger.record("nightly", emission("a"))
    ledger.record("nightly, by hand", emission("b"))
    ledger.record("other job", Emission(task_id="c", key="other:k", sent_at=NOW - 10))
    found = ledger.outstanding("t:k", snapshot(), NOW)
    assert sorted(e.task_id for e, _, _ in found) == ["a", "b"]
    assert [e.task_id for e, _, _ in ledger.outstanding("other:k", snapshot(), NOW)] == ["c"]


def test_the_key_index_survives_a_save_and_a_load():
    ledger = Ledger()
    ledger.record("nightly", emission("a"))
    again = Ledger.from_state(json.loads(json.dumps(ledger.to_state())))
    assert [e.task_id for e, _, _ in again.outstanding("t:k", snapshot(), NOW)] == ["a"]


# -- the write-ahead journal -----------------------------------------------------


def test_a_journal_record_replayed_into_a_state_saved_before_it_restores_the_emission():
    saved = Ledger().to_state()                      # the last save, before the send
    live = Ledger.from_state(saved)
    record = live.note_sending("gc", emission("sent-then-killed"))

    recovered = Ledger.from_state(saved)
    assert recovered.replay([record]) == 1
    assert [e.task_id for e in recovered.entries["gc"]] == ["sent-then-killed"]
    assert recovered.outstanding("t:k", snapshot(), NOW)[0][1] is Status.QUEUED


def test_records_already_in_the_saved_state_are_not_applied_twice():
    live = Ledger()
    first = live.note_sending("gc", emission("a"))
    saved = live.to_state()                          # includes record 1
    second = live.note_sending("gc", emission("b"))

    recovered = Ledger.from_state(saved)
    assert recovered.replay([second, first]) == 1    # order in the store does not matter
    assert [e.task_id for e in recovered.entries["gc"]] == ["a", "b"]
    assert recovered.seq == 2


def test_a_record_is_not_resurrected_after_the_state_saw_it_finish():
    live = Ledger()
    record = live.note_sending("gc", emission("done", expires_at=NOW - 1))
    live.outstanding("t:k", snapshot(), NOW)         # expired unseen: forgotten
    saved = live.to_state()                          # the journal was not emptied (killed)

    recovered = Ledger.from_state(saved)
    assert recovered.replay([record]) == 0
    assert "gc" not in recovered.entries


def test_a_withdrawn_send_is_not_outstanding_after_replay():
    live = Ledger()
    sent = live.note_sending("gc", emission("failed-publish"))
    withdrawn = live.withdraw("gc", "failed-publish")
    assert "gc" not in live.entries

    recovered = Ledger()
    recovered.replay([sent, withdrawn])
    assert "gc" not in recovered.entries and recovered.seq == 2


def test_damaged_journal_records_are_skipped_and_the_rest_applied():
    live = Ledger()
    good = live.note_sending("gc", emission("ok"))
    garbage = [None, "text", {"seq": "1"}, {"seq": 5, "entry": "gc", "emission": {"x": 1}}]

    recovered = Ledger()
    assert recovered.replay([*garbage, good]) == 1
    assert [e.task_id for e in recovered.entries["gc"]] == ["ok"]


def test_the_sequence_number_survives_a_save_and_a_load():
    live = Ledger()
    for i in range(3):
        live.note_sending("gc", emission(str(i)))
    assert Ledger.from_state(json.loads(json.dumps(live.to_state()))).seq == 3


@pytest.mark.parametrize("seen_on", [["w1"], 7, {"a": 1}, True])
def test_a_seen_on_that_is_not_a_worker_name_is_dropped_and_the_emission_stays_queued(seen_on):
    # a forged ledger: the emission still blocks (queued until it expires)
    state = {"version": 1, "seq": 0, "entries": {"gc": [
        {"task_id": "a", "key": "k", "sent_at": NOW - 10, "expires_at": NOW + 60,
         "seen_on": seen_on, "seen_at": NOW - 5}]}}
    ledger = Ledger.from_state(json.loads(json.dumps(state)))
    [(emission, status, _)] = ledger.outstanding("k", snapshot(), NOW)
    assert emission.seen_on is None and emission.seen_at is None
    assert status is Status.QUEUED


DEEP = "[" * 5000 + "]" * 5000


def nested(depth: int = 5000) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_records_holding_values_nested_past_any_limit_lose_only_themselves():
    # what a decoder with a higher limit (or none) hands over from a store
    ledger = Ledger.from_state({"version": 1, "seq": 0, "pending": ["gc", nested()],
                                "entries": {"gc": [
                                    {"task_id": "a", "key": "k", "sent_at": 1.0},
                                    {"task_id": nested(), "key": "k", "sent_at": 1.0}]}})
    assert ledger.replay([{"seq": 1, "entry": nested(), "emission": {}},
                          {"seq": 2, "entry": "gc", "withdraw": nested()},
                          {"seq": 3, "entry": "gc", "emission": {
                              "task_id": "b", "key": "k", "sent_at": 2.0}}]) == 1
    assert [e.task_id for e in ledger.entries["gc"]] == ["a", "b"]
    assert ledger.pending == {"gc"}


def test_a_journal_line_nested_past_the_parsers_limit_is_skipped(tmp_path):
    from ccs_beat.stores.file import read_journal
    path = tmp_path / "journal"
    good = {"seq": 1, "entry": "gc", "emission": {"task_id": "b", "key": "k", "sent_at": 2.0}}
    path.write_text(DEEP + "\n" + json.dumps(good) + "\n", encoding="utf-8")
    assert read_journal(str(path)) == [good]
