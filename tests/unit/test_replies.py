"""Reading workers' replies, and who the read waits for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccs_beat.identity import KeySpec
from ccs_beat.replies import GarbledReply, is_unknown_command_error, parse_legacy, parse_reply
from ccs_beat.snapshot import Membership, SeenTask, Snapshot, WorkerView


def reply(**overrides) -> dict:
    body = {"ccs": 1, "now": 1000.0, "pool": "prefork", "peers": ["w2@h"],
            "active": [{"id": "a", "name": "gc", "args": [1], "kwargs": {},
                        "time_start": 990.0, "stamp": {"key": "gc:x", "sent_at": 989.0}}],
            "reserved": [{"id": "r", "name": "gc", "args": [2], "kwargs": {},
                          "time_start": None}],
            "scheduled": [{"eta": "2026-01-01T00:00:00", "priority": 0,
                           "request": {"id": "s", "name": "gc", "args": [3], "kwargs": {}}}]}
    body.update(overrides)
    return body


def test_reply_gives_every_task_with_its_state_and_age_on_the_workers_clock():
    view = parse_reply("w1@h", reply())
    states = {t.id: t.state for t in view.tasks}
    assert states == {"a": "active", "r": "reserved", "s": "scheduled"}
    active = next(t for t in view.tasks if t.id == "a")
    assert active.age == pytest.approx(10.0)          # 1000 - 990, both worker clock
    assert active.stamp["key"] == "gc:x"
    assert view.peers == frozenset({"w2@h"}) and not view.legacy


@pytest.mark.parametrize(("body", "problem"), [
    (["not", "a", "dict"], "not a dict"),
    (reply(ccs=2), "protocol"),
    (reply(now=None), "'now'"),
    (reply(now=True), "'now'"),
    (reply(active="nope"), "'active'"),
    (reply(peers="w2"), "'peers'"),
    (reply(peers=[1, 2]), "'peers'"),
])
def test_garbled_reply_is_rejected_naming_the_problem(body, problem):
    with pytest.raises(GarbledReply) as info:
        parse_reply("w1@h", body)
    assert problem in str(info.value)


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5)
                    | st.integers(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["ccs", "now", "active", "reserved", "scheduled",
                                         "peers", "id", "name", "time_start"]), c, max_size=6),
                    max_leaves=15))
def test_any_reply_either_parses_or_is_reported_garbled(body):
    try:
        view = parse_reply("w1@h", body)
    except GarbledReply:
        return
    assert all(isinstance(t.id, str) for t in view.tasks)


def test_error_reply_of_a_worker_without_ccs_beat_is_recognised():
    assert is_unknown_command_error({"error": "KeyError('ccs_snapshot')"})
    assert not is_unknown_command_error({"error": "KeyError('other')"})
    assert not is_unknown_command_error(reply())


def test_stock_inspect_replies_build_a_legacy_view_without_a_worker_clock():
    view = parse_legacy("old@h", {"active": [{"id": "a", "name": "gc", "time_start": 5.0}],
                                  "reserved": [], "scheduled": []})
    assert view.legacy and view.now is None and view.tasks[0].age is None
    with pytest.raises(GarbledReply, match="'reserved'"):
        parse_legacy("old@h", {"active": [], "reserved": None, "scheduled": []})


# -- membership -----------------------------------------------------------------

def test_a_worker_that_answered_is_expected_next_time():
    m = Membership(expiry=30)
    m.observe(0, answered=["w1"], peer_lists=[None], silent=[])
    assert m.expected() == {"w1"}


def test_a_peer_listed_by_gossip_is_expected_and_missing_until_it_answers():
    m = Membership(expiry=30)
    missing, gone = m.observe(0, answered=["w1"], peer_lists=[frozenset({"w2"})], silent=[])
    assert m.expected() == {"w1", "w2"} and missing == {"w2"} and not gone


def test_without_gossip_a_silent_worker_is_missing_until_it_expires():
    m = Membership(expiry=30)
    m.observe(0, answered=["w1", "w2"], peer_lists=[None, None], silent=[])
    assert m.observe(10, answered=["w1"], peer_lists=[None], silent=["w2"]) == ({"w2"}, set())
    assert m.observe(31, answered=["w1"], peer_lists=[None], silent=["w2"]) == (set(), {"w2"})
    assert m.expected() == {"w1"}


def test_gossip_retires_a_silent_worker_after_two_missed_reads():
    m = Membership(expiry=300)
    m.observe(0, answered=["w1", "w2"], peer_lists=[frozenset({"w2"}), frozenset({"w1"})],
              silent=[])
    first = m.observe(1, answered=["w1"], peer_lists=[frozenset()], silent=["w2"])
    second = m.observe(2, answered=["w1"], peer_lists=[frozenset()], silent=["w2"])
    assert first == ({"w2"}, set())          # one missed read is not enough
    assert second == (set(), {"w2"})


def test_gossip_cannot_retire_a_worker_while_some_peer_has_no_gossip():
    m = Membership(expiry=300)
    m.observe(0, answered=["w1", "w2", "w3"], peer_lists=[frozenset()] * 3, silent=[])
    for t in (1, 2, 3):
        missing, gone = m.observe(t, answered=["w1", "w3"],
                                  peer_lists=[frozenset(), None], silent=["w2"])
    assert missing == {"w2"} and not gone


def test_a_worker_alive_in_any_peers_gossip_stays_expected():
    m = Membership(expiry=300)
    m.observe(0, answered=["w1", "w2"], peer_lists=[frozenset(), frozenset()], silent=[])
    for t in (1, 2, 3):
        missing, gone = m.observe(t, answered=["w1", "w3"],
                                  peer_lists=[frozenset(), frozenset({"w2"})], silent=["w2"])
    assert missing == {"w2"} and not gone


# -- snapshot -----------------------------------------------------------------

def view(host: str, *tasks: SeenTask) -> WorkerView:
    return WorkerView(hostname=host, tasks=tasks, now=0.0, peers=None)


def t(task_id: str, args, worker="w1") -> SeenTask:
    return SeenTask(id=task_id, name="gc", args=args, kwargs={}, state="active", worker=worker)


def test_index_groups_identical_tasks_and_skips_ones_that_cannot_be_keyed():
    snap = Snapshot(taken_at=0, workers={"w1": view("w1", t("a", [1]), t("b", [1]),
                                                    t("c", [{1, 2}]))})
    by_args = snap.index(KeySpec())
    assert sorted(len(v) for v in by_args.values()) == [2]
    assert [x.id for x in next(iter(snap.index(KeySpec(kind="name")).values()))] == ["a", "b",
                                                                                      "c"]
    assert snap.find("c").id == "c"


@pytest.mark.parametrize(("snap", "expected"), [
    (Snapshot(taken_at=0, timeout=1.0), "no worker answered within 1s"),
    (Snapshot(taken_at=0, workers={"w1": view("w1")}, missing=frozenset({"w2"})),
     "no reply from w2"),
    (Snapshot(taken_at=0, workers={"w1": view("w1")}, garbled={"w3": "bad"}),
     "unusable reply from w3: bad"),
    (Snapshot(taken_at=0, failure="ConnectionResetError()"), "broker error"),
])
def test_incomplete_reason_names_what_could_not_be_read(snap, expected):
    assert expected in snap.incomplete_reason()


def test_complete_snapshot_has_no_incomplete_reason():
    assert Snapshot(taken_at=0, workers={"w1": view("w1")}).incomplete_reason() is None


@pytest.mark.parametrize(("item", "why"), [
    ({"id": "t-1", "name": "jobs.gc", "args": 5, "kwargs": {}}, "args 5, not a list"),
    ({"id": "t-1", "name": "jobs.gc", "args": [], "kwargs": [["x", 1], 5]}, "not a dict"),
    ({"id": "t-1", "name": "jobs.gc", "time_start": "yesterday"}, "time_start 'yesterday'"),
    ({"id": "t-1", "name": "jobs.gc", "time_start": float("nan")}, "time_start nan"),
], ids=["args-not-a-list", "kwargs-not-a-dict", "time-start-text", "time-start-nan"])
def test_a_malformed_task_is_dropped_and_the_rest_of_its_reply_is_used(caplog, item, why):
    # a non-Python producer's request: only that task is left out, named once
    body = reply(active=[item, {"id": "ok", "name": "jobs.other", "args": [], "kwargs": {},
                                "time_start": 990.0}])
    with caplog.at_level("WARNING", logger="ccs_beat.cluster"):
        view = parse_reply("w1@h", body)

    assert [t.id for t in view.tasks if t.state == "active"] == ["ok"]
    assert [(d.task_id, d.name) for d in view.dropped] == [("t-1", "jobs.gc")]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "t-1 (jobs.gc)" in warnings[0] and "w1@h" in warnings[0]
    assert why in warnings[0]


def test_a_dropped_task_makes_the_read_incomplete_for_its_name_only():
    body = reply(active=[{"id": "t-1", "name": "jobs.gc", "args": 5, "kwargs": {}},
                         {"id": "ok", "name": "jobs.other", "args": [], "kwargs": {}}])
    snap = Snapshot(taken_at=0.0, workers={"w1@h": parse_reply("w1@h", body)})

    assert "t-1 (jobs.gc)" in snap.incomplete_reason("jobs.gc")
    assert snap.incomplete_reason("jobs.other") is None
    assert snap.index(KeySpec("args"))   # the usable tasks are indexed, nothing raises


def test_an_item_that_names_no_task_makes_the_read_incomplete_for_every_name():
    snap = Snapshot(taken_at=0.0, workers={"w1@h": parse_reply("w1@h", reply(active=["x"]))})

    assert "unusable active item" in snap.incomplete_reason("jobs.other")


def test_an_age_no_float_can_hold_is_unknown_not_infinite():
    # each number finite on its own, their difference is not
    body = {"ccs": 1, "now": 1.7e308, "peers": [], "reserved": [], "scheduled": [],
            "active": [{"id": "t-1", "name": "jobs.gc", "args": [], "kwargs": {},
                        "time_start": -1.7e308}]}
    assert parse_reply("w1@h", body).tasks[0].age is None
