"""Malformed input gets a clear error that names the culprit (issue 7).

Each case in :data:`BAD_INPUTS` is one distinct malformed value fed to the
public entry point that first sees it (an entry's ``singleton`` option, an
``app.conf`` setting, a key spec, a task's arguments, a worker's reply, a
Django row's field). The error must be ours (``ConfigurationError`` /
``UnkeyableError`` / ``GarbledReply``, never a raw ``TypeError`` and the like)
and its message must name the entry, setting, field or argument, and the bad
value. The property tests at the end throw arbitrary JSON-like values at the
three parsers that read user or wire data.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import schedule
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu.transport import TRANSPORT_ALIASES, memory

from ccs_beat import ConfigurationError, UnkeyableError
from ccs_beat.cluster import check_broadcast_support
from ccs_beat.contrib.django.options import field_errors, key_from_text, singleton_option
from ccs_beat.coordinator import Coordinator
from ccs_beat.identity import DEFAULT_KEY, parse_key_spec, task_key
from ccs_beat.policy import (
    MAX_EXPIRES,
    ON_UNKNOWN,
    OVERLAPS,
    POLICY_FIELDS,
    Policy,
    Settings,
    known_settings,
    load_settings,
    parse_policy,
)
from ccs_beat.replies import GarbledReply, parse_reply
from ccs_beat.snapshot import WorkerView

ENTRY = "beat entry 'x': singleton"


def policy(value: Any) -> Callable[[], Any]:
    return lambda: parse_policy(value, where=ENTRY)


def conf(**values: Any) -> Callable[[], Any]:
    return lambda: load_settings(values)


def key_spec(value: Any) -> Callable[[], Any]:
    return lambda: parse_key_spec(value, where=ENTRY)


def code_key_spec(value: Any) -> Callable[[], Any]:
    """A key spec written in Python code, where a dotted path may be imported."""
    return lambda: parse_key_spec(value, where=ENTRY, from_code=True)


def key(*args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: task_key("blobs.gc", args, kwargs, DEFAULT_KEY)


def reply(**overrides: Any) -> dict[str, Any]:
    """A well-formed ccs_snapshot reply, with ``overrides`` applied."""
    body: dict[str, Any] = {"ccs": 1, "now": 1000.0, "pool": "prefork", "peers": [],
                            "active": [], "reserved": [], "scheduled": []}
    body.update(overrides)
    return body


def worker_says(body: Any) -> Callable[[], Any]:
    return lambda: parse_reply("w1@host", body)


def not_a_key_function(name: str, args: Any, kwargs: Any) -> str:
    return name


NOT_CALLABLE = 42

BAD_INPUTS = [
    # -- an entry's ``singleton`` option ------------------------------------
    pytest.param(policy("skipp"), ConfigurationError,
                 [ENTRY, "'skipp'", "overlap", "did you mean 'skip'"],
                 id="policy-misspelt-overlap-word-suggests-the-right-one"),
    pytest.param(policy({"overlap": "sometimes"}), ConfigurationError,
                 [ENTRY, "'sometimes'", "skip, buffer_one, allow"],
                 id="policy-unknown-overlap-in-dict"),
    pytest.param(policy({"overlp": "skip"}), ConfigurationError,
                 [ENTRY, "'overlp'", "did you mean 'overlap'"],
                 id="policy-unknown-dict-key-suggests-the-right-one"),
    pytest.param(policy({1: "skip"}), ConfigurationError,
                 [ENTRY, "unknown singleton option 1"],
                 id="policy-non-string-dict-key"),
    pytest.param(policy(5), ConfigurationError, [ENTRY, "got 5"],
                 id="policy-int-instead-of-word-or-dict"),
    pytest.param(policy(["skip"]), ConfigurationError, [ENTRY, "got ['skip']"],
                 id="policy-list-instead-of-word-or-dict"),
    pytest.param(policy({"overlap": None}), ConfigurationError,
                 [ENTRY, "overlap policy None"],
                 id="policy-none-inside-overlap-field"),
    pytest.param(policy({"overlap": ["skip"]}), ConfigurationError,
                 [ENTRY, "overlap policy ['skip']"],
                 id="policy-list-inside-overlap-field"),
    pytest.param(policy({"on_unknown": "allow"}), ConfigurationError,
                 [ENTRY, "on_unknown value 'allow'", "emit, skip"],
                 id="policy-unknown-on-unknown"),
    pytest.param(policy({"on_unknown": None}), ConfigurationError,
                 [ENTRY, "on_unknown value None"],
                 id="policy-none-inside-on-unknown-field"),
    pytest.param(policy({"key": 5}), ConfigurationError, [ENTRY, "unknown key spec 5"],
                 id="policy-int-inside-key-field"),
    pytest.param(policy({"expires": -1}), ConfigurationError,
                 [ENTRY, "expires", "-1.0", "out of range"],
                 id="policy-negative-expires"),
    pytest.param(policy({"expires": 0}), ConfigurationError,
                 [ENTRY, "expires", "0.0", "more than 0"],
                 id="policy-zero-expires"),
    pytest.param(policy({"expires": 10 * MAX_EXPIRES}), ConfigurationError,
                 [ENTRY, "expires", "out of range", f"at most {MAX_EXPIRES:g}"],
                 id="policy-absurd-expires"),
    pytest.param(policy({"expires": math.nan}), ConfigurationError,
                 [ENTRY, "expires", "nan"], id="policy-nan-expires"),
    pytest.param(policy({"expires": math.inf}), ConfigurationError,
                 [ENTRY, "expires", "inf"], id="policy-infinite-expires"),
    pytest.param(policy({"expires": "60"}), ConfigurationError,
                 [ENTRY, "expires", "number of seconds", "'60'"],
                 id="policy-string-expires"),
    pytest.param(policy({"expires": True}), ConfigurationError,
                 [ENTRY, "expires", "number of seconds", "True"],
                 id="policy-bool-expires"),
    pytest.param(policy({"expires": timedelta(seconds=-5)}), ConfigurationError,
                 [ENTRY, "expires", "-5.0"], id="policy-negative-timedelta-expires"),
    # what a JSON-decoded redbeat entry can carry under options["singleton"]
    pytest.param(policy(["skip", "name"]), ConfigurationError,
                 [ENTRY, "got ['skip', 'name']"], id="redbeat-json-list-as-policy"),
    pytest.param(policy({"key": {"kwargs": ["tenant"]}}), ConfigurationError,
                 [ENTRY, "unknown key spec {'kwargs': ['tenant']}"],
                 id="redbeat-json-nested-dict-as-key"),
    # -- app-wide settings ----------------------------------------------------
    pytest.param(conf(ccs_beat_inspect_timout=1.0), ConfigurationError,
                 ["'ccs_beat_inspect_timout'", "did you mean 'ccs_beat_inspect_timeout'"],
                 id="settings-misspelt-key-suggests-the-right-one"),
    pytest.param(conf(CELERY_CCS_BEAT_WORKER_EXPIRE=30), ConfigurationError,
                 ["'CELERY_CCS_BEAT_WORKER_EXPIRE'", "did you mean 'ccs_beat_worker_expiry'"],
                 id="settings-misspelt-django-namespaced-key"),
    pytest.param(conf(ccs_beat_inspect_timeout=-1), ConfigurationError,
                 ["ccs_beat_inspect_timeout", "-1.0", "out of range"],
                 id="settings-negative-timeout"),
    pytest.param(conf(ccs_beat_inspect_timeout=True), ConfigurationError,
                 ["ccs_beat_inspect_timeout", "number of seconds", "True"],
                 id="settings-bool-where-a-number-is-expected"),
    pytest.param(conf(ccs_beat_worker_expiry="30"), ConfigurationError,
                 ["ccs_beat_worker_expiry", "'30'"], id="settings-string-number"),
    pytest.param(conf(ccs_beat_worker_expiry=None), ConfigurationError,
                 ["ccs_beat_worker_expiry", "None"], id="settings-none-number"),
    pytest.param(conf(ccs_beat_guard_margin=math.nan), ConfigurationError,
                 ["ccs_beat_guard_margin", "nan"], id="settings-nan-margin"),
    pytest.param(conf(ccs_beat_guard_delay=math.inf), ConfigurationError,
                 ["ccs_beat_guard_delay", "inf", "at most 600"], id="settings-infinite-delay"),
    pytest.param(conf(ccs_beat_guard_delay=1.0, ccs_beat_guard_timeout=1.0,
                      ccs_beat_guard_margin=0.25), ConfigurationError,
                 ["ccs_beat_guard_delay", "settle delay (1s)", "reply timeout (1s)",
                  "margin (0.25s)"],
                 id="settings-guard-delay-below-timeout-plus-two-margins"),
    pytest.param(conf(ccs_beat_worker_expiry=2, ccs_beat_inspect_timeout=5), ConfigurationError,
                 ["ccs_beat_worker_expiry (2s)", "ccs_beat_inspect_timeout (5s)"],
                 id="settings-worker-expiry-shorter-than-inspect-timeout"),
    pytest.param(conf(ccs_beat_default_policy="sometimes"), ConfigurationError,
                 ["ccs_beat_default_policy", "'sometimes'"],
                 id="settings-unknown-default-policy"),
    # -- key specs ----------------------------------------------------------------
    pytest.param(key_spec([]), ConfigurationError, [ENTRY, "empty list"],
                 id="key-empty-list"),
    pytest.param(key_spec(["tenant", "tenant"]), ConfigurationError,
                 [ENTRY, "['tenant', 'tenant']", "repeats"], id="key-repeated-name"),
    pytest.param(key_spec(["tenant-id"]), ConfigurationError, [ENTRY, "['tenant-id']"],
                 id="key-non-identifier-name"),
    pytest.param(key_spec(["tenant", 3]), ConfigurationError, [ENTRY, "[3]"],
                 id="key-non-string-name"),
    pytest.param(code_key_spec("no_such_module_ccs.keyfn"), ConfigurationError,
                 [ENTRY, "'no_such_module_ccs.keyfn'", "cannot be imported",
                  "no_such_module_ccs"], id="key-dotted-path-to-missing-module"),
    pytest.param(code_key_spec("os.path.no_such_function"), ConfigurationError,
                 [ENTRY, "'os.path.no_such_function'", "cannot be imported"],
                 id="key-dotted-path-to-missing-attribute"),
    pytest.param(code_key_spec(f"{__name__}.NOT_CALLABLE"), ConfigurationError,
                 [ENTRY, f"'{__name__}.NOT_CALLABLE'", "not callable"],
                 id="key-dotted-path-to-non-callable"),
    pytest.param(code_key_spec("math:pi"), ConfigurationError,
                 [ENTRY, "'math:pi'", "not callable"], id="key-colon-path-to-non-callable"),
    pytest.param(key_spec("os.execve"), ConfigurationError,
                 [ENTRY, "'os.execve'", "not registered", "ccs_beat_key_functions"],
                 id="key-stored-dotted-path-not-registered"),
    pytest.param(conf(ccs_beat_key_functions=["a.b"]), ConfigurationError,
                 ["ccs_beat_key_functions", "['a.b']"], id="settings-key-functions-not-a-dict"),
    pytest.param(conf(ccs_beat_key_functions={"name": "os.getcwd"}), ConfigurationError,
                 ["ccs_beat_key_functions", "'name'", "cannot name"],
                 id="settings-key-functions-reserved-short-name"),
    pytest.param(conf(ccs_beat_key_functions={"t": "no_such_module_ccs.f"}), ConfigurationError,
                 ["ccs_beat_key_functions['t']", "cannot be imported"],
                 id="settings-key-functions-missing-module"),
    pytest.param(conf(ccs_beat_key_functions={"t": 5}), ConfigurationError,
                 ["ccs_beat_key_functions['t']", "5"], id="settings-key-functions-not-a-path"),
    pytest.param(key_spec("kwargs"), ConfigurationError, [ENTRY, "unknown key spec 'kwargs'"],
                 id="key-bare-unknown-word"),
    # -- arguments that cannot be keyed ---------------------------------------
    pytest.param(key({1, 2}), UnkeyableError, ["args[0]", "builtins.set"],
                 id="args-set"),
    pytest.param(key(object()), UnkeyableError, ["args[0]", "builtins.object"],
                 id="args-arbitrary-object"),
    pytest.param(key(limit=math.nan), UnkeyableError, ["kwargs['limit']", "nan"],
                 id="kwargs-nan"),
    pytest.param(key(1, -math.inf), UnkeyableError, ["args[1]", "-inf"], id="args-infinity"),
    pytest.param(key(b"blob"), UnkeyableError, ["args[0]", "builtins.bytes", "b'blob'"],
                 id="args-bytes"),
    pytest.param(key(uuid.UUID(int=7)), UnkeyableError, ["args[0]", "uuid.UUID"],
                 id="args-uuid"),
    pytest.param(key(Decimal("1.5")), UnkeyableError, ["args[0]", "decimal.Decimal"],
                 id="args-decimal"),
    pytest.param(key({1: "a"}), UnkeyableError, ["args[0]", "int dict key 1"],
                 id="args-dict-with-int-key"),
    pytest.param(key(batch=[{"ids": [1, {2}]}]), UnkeyableError,
                 ["kwargs['batch'][0]['ids'][1]", "builtins.set"],
                 id="kwargs-set-deep-inside-nesting-names-its-path"),
    pytest.param(lambda: task_key("blobs.gc", [], {"when": {3}},
                                  parse_key_spec(["when"], where=ENTRY)),
                 UnkeyableError, ["kwargs['when']", "builtins.set"],
                 id="kwargs-key-spec-picks-an-unkeyable-argument"),
    pytest.param(lambda: task_key("blobs.gc", [], {},
                                  parse_key_spec(lambda n, a, k: 1 / 0, where=ENTRY,
                                                 from_code=True)),
                 UnkeyableError, ["key function", "ZeroDivisionError"],
                 id="key-function-that-raises"),
    pytest.param(lambda: task_key("blobs.gc", [], {},
                                  parse_key_spec(lambda n, a, k: "", where=ENTRY, from_code=True)),
                 UnkeyableError, ["key function", "returned ''", "non-empty str"],
                 id="key-function-that-returns-an-empty-string"),
    # -- Django rows: the stored key text ------------------------------------------
    pytest.param(lambda: parse_key_spec(key_from_text("tenant"), where=ENTRY),
                 ConfigurationError, [ENTRY, "unknown key spec 'tenant'", "ccs_beat_key_functions"],
                 id="django-key-text-unknown-word"),
    pytest.param(lambda: parse_policy(singleton_option(True, key="every"), where=ENTRY),
                 ConfigurationError, ["'every'"], id="django-row-option-with-unknown-key-text"),
    # -- garbled or foreign replies to the cluster read -----------------------------
    pytest.param(worker_says(None), GarbledReply, ["NoneType", "not a dict"],
                 id="reply-none"),
    pytest.param(worker_says("pong"), GarbledReply, ["str", "not a dict"],
                 id="reply-string"),
    pytest.param(worker_says({"ok": "pong"}), GarbledReply, ["protocol None"],
                 id="reply-of-a-stock-command"),
    pytest.param(worker_says(reply(ccs="1")), GarbledReply, ["protocol '1'", "expected 1"],
                 id="reply-protocol-as-string"),
    pytest.param(worker_says(reply(ccs=0)), GarbledReply, ["protocol 0"],
                 id="reply-of-an-older-protocol"),
    pytest.param(worker_says({"ccs": 1, "now": 1.0, "active": [], "scheduled": []}),
                 GarbledReply, ["'reserved'", "NoneType"], id="reply-missing-reserved-list"),
    pytest.param(worker_says(reply(now="12:00")), GarbledReply, ["'now'", "'12:00'"],
                 id="reply-now-as-string"),
    pytest.param(worker_says(reply(active={"a": {"id": "a", "name": "gc"}})), GarbledReply,
                 ["'active'", "dict", "not a list"], id="reply-tasks-as-dict"),
    pytest.param(worker_says(reply(peers={"w2@host": True})), GarbledReply,
                 ["'peers'", "not a list"], id="reply-peers-as-dict"),
]


@pytest.mark.parametrize(("call", "error", "substrings"), BAD_INPUTS)
def test_malformed_input_raises_our_error_naming_the_culprit_and_value(
        call: Callable[[], Any], error: type[Exception], substrings: list[str]) -> None:
    with pytest.raises(error) as info:
        call()
    assert type(info.value).__module__.startswith("ccs_beat"), info.value
    message = str(info.value)
    missing = [s for s in substrings if s not in message]
    assert not missing, f"{missing} not in {message!r}"


def test_there_are_at_least_25_distinct_bad_inputs() -> None:
    ids = [p.id for p in BAD_INPUTS]
    assert len(set(ids)) == len(ids) >= 25


def test_a_one_megabyte_argument_is_keyed_quickly_and_stably() -> None:
    big = "x" * (1 << 20)
    started = time.perf_counter()
    first = task_key("blobs.gc", [big], {"ids": list(range(10_000))}, DEFAULT_KEY)
    elapsed = time.perf_counter() - started
    assert first == task_key("blobs.gc", [big], {"ids": list(range(10_000))}, DEFAULT_KEY)
    assert first.startswith("blobs.gc:") and len(first) < 100
    print(f"1 MB argument keyed in {elapsed * 1000:.1f} ms")  # measured, not asserted


# -- Django rows: every bad field is reported next to that field ---------------

@pytest.mark.parametrize(("fields", "field", "substrings"), [
    pytest.param({"overlap": "skipp"}, "overlap", ["'skipp'", "did you mean 'skip'"],
                 id="misspelt-overlap"),
    pytest.param({"key": "kwargs:tenant-id"}, "key", ["['tenant-id']"],
                 id="kwargs-key-with-non-identifier"),
    pytest.param({"key": "kwargs:a,a"}, "key", ["['a', 'a']", "repeats"],
                 id="kwargs-key-with-repeated-name"),
    pytest.param({"key": "kwargs: , "}, "key", ["empty list"], id="kwargs-key-with-no-names"),
    pytest.param({"key": "no_such_module_ccs.f"}, "key",
                 ["'no_such_module_ccs.f'", "not registered", "ccs_beat_key_functions"],
                 id="key-path-not-registered"),
    pytest.param({"on_unknown": "retry"}, "on_unknown", ["'retry'", "emit, skip"],
                 id="unknown-on-unknown"),
    pytest.param({"expires": -30}, "expires", ["-30.0", "out of range"],
                 id="negative-expires"),
    pytest.param({"expires": "soon"}, "expires", ["'soon'", "number of seconds"],
                 id="text-expires"),
    pytest.param({"enabled": "yes"}, "enabled", ["'yes'", "true or false"],
                 id="enabled-not-a-bool"),
])
def test_django_row_field_errors_name_the_field_and_the_value(
        fields: dict[str, Any], field: str, substrings: list[str]) -> None:
    errors = field_errors(fields, where="periodic task 'x'")
    assert set(errors) == {field}
    assert all(s in errors[field] for s in substrings), errors[field]
    assert not errors[field].startswith("periodic task 'x': ")   # the form shows the field


def test_django_row_with_several_bad_fields_reports_each_of_them() -> None:
    errors = field_errors({"overlap": "never", "key": "tenant", "on_unknown": "x",
                           "expires": math.nan, "enabled": 1})
    assert set(errors) == {"overlap", "key", "on_unknown", "expires", "enabled"}


# -- Coordinator.validate: every bad entry in one error ---------------------------

@pytest.fixture
def fs_app(tmp_path: Path) -> Celery:
    folder = tmp_path / "broker"
    (folder / "control").mkdir(parents=True)
    app = Celery("t", broker="filesystem://", set_as_current=False)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder), "data_folder_out": str(folder),
        "control_folder": str(folder / "control")}
    return app


def entry(app: Celery, name: str, args: Any = (), kwargs: Any = None,
          options: Any = None) -> ScheduleEntry:
    return ScheduleEntry(name=name, task="blobs.gc", schedule=schedule(timedelta(seconds=60)),
                         args=args, kwargs=kwargs or {}, options=options or {}, app=app)


def test_validate_names_every_bad_entry_and_its_value_in_one_error(fs_app: Celery) -> None:
    entries = {
        "typo": entry(fs_app, "typo", options={"singleton": {"overlp": "skip"}}),
        "uuid-arg": entry(fs_app, "uuid-arg", args=(uuid.UUID(int=1),)),
        "nan-expiry": entry(fs_app, "nan-expiry", options={"singleton": {"expires": math.nan}}),
        "bad-key": entry(fs_app, "bad-key", options={"singleton": {"key": ["a", "a"]}}),
        "bytes-kwarg": entry(fs_app, "bytes-kwarg", kwargs={"blob": b"\x00"}),
        "fine": entry(fs_app, "fine", args=(1, "a"), options={"singleton": "buffer_one"}),
        "unchecked": entry(fs_app, "unchecked", args=({1},), options={"singleton": False}),
    }
    with pytest.raises(ConfigurationError) as info:
        Coordinator(fs_app, sender=None).validate(entries)
    lines = str(info.value).splitlines()
    assert lines[0] == "ccs_beat: invalid configuration:"
    problems = {line.split("'")[1]: line for line in lines[1:]}
    assert set(problems) == {"typo", "uuid-arg", "nan-expiry", "bad-key", "bytes-kwarg"}
    assert "'overlp'" in problems["typo"]
    assert "args[0]" in problems["uuid-arg"] and "uuid.UUID" in problems["uuid-arg"]
    assert "expires" in problems["nan-expiry"] and "nan" in problems["nan-expiry"]
    assert "['a', 'a']" in problems["bad-key"]
    assert "kwargs['blob']" in problems["bytes-kwarg"]


def test_coordinator_refuses_bad_settings_before_looking_at_entries(fs_app: Celery) -> None:
    fs_app.conf.ccs_beat_burst_max_age = -5
    with pytest.raises(ConfigurationError, match=r"ccs_beat_burst_max_age: -5\.0"):
        Coordinator(fs_app, sender=None)


# -- a transport without broadcast -------------------------------------------------

class QueueOnlyTransport(memory.Transport):
    """Like SQS: point-to-point queues, no fanout exchange."""

    implements = memory.Transport.implements.extend(exchange_type=frozenset(["direct"]))
    driver_type = driver_name = "queueonly"


@pytest.fixture
def queue_only_alias() -> Iterator[str]:
    TRANSPORT_ALIASES["queueonly"] = f"{__name__}:QueueOnlyTransport"
    yield "queueonly://"
    TRANSPORT_ALIASES.pop("queueonly", None)


def test_a_transport_without_fanout_is_refused_naming_transport_and_url(
        queue_only_alias: str) -> None:
    app = Celery("t", broker=queue_only_alias, set_as_current=False)
    with pytest.raises(ConfigurationError) as info:
        check_broadcast_support(app)
    message = str(info.value)
    assert "'queueonly'" in message and "'queueonly://'" in message
    assert "broadcast" in message and "allow" in message


# -- properties: arbitrary JSON-like input never escapes as a raw exception --------
#
# Integers are bounded and free text has no '.' or ':' on purpose: integers
# beyond float range and some relative dotted paths are known to escape as raw
# exceptions (see the report for issue 7); they are left out until fixed.
# Dotted paths come from a short safe list so no arbitrary module is imported.

SAFE_TEXT = st.text(st.characters(blacklist_characters=".:"), max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 53), 2 ** 53)
           | st.floats(allow_nan=True, allow_infinity=True) | SAFE_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(SAFE_TEXT, inner, max_size=4), max_leaves=12)
WORDS = st.sampled_from([*OVERLAPS, *ON_UNKNOWN, "args", "name", "skipp", "",
                         "math.floor", "math.pi", "no_such_module_ccs.f", "os.path.nope"])
FIELD_VALUES = WORDS | JSON | st.lists(WORDS, max_size=3)
POLICY_DICTS = st.dictionaries(st.sampled_from([*POLICY_FIELDS, "overlp"]), FIELD_VALUES,
                               max_size=4)


@settings(max_examples=200, deadline=None)
@given(value=FIELD_VALUES | POLICY_DICTS)
def test_parse_policy_returns_a_policy_or_raises_configuration_error(value: Any) -> None:
    try:
        result = parse_policy(value, where=ENTRY)
    except ConfigurationError as exc:
        assert str(exc).startswith(ENTRY)
    else:
        assert isinstance(result, Policy)


TASK = st.fixed_dictionaries({}, optional={
    "id": SAFE_TEXT | JSON, "name": SAFE_TEXT | JSON, "args": JSON, "kwargs": JSON,
    "time_start": SCALARS, "stamp": JSON, "request": JSON})
REPLIES = st.fixed_dictionaries({}, optional={
    "ccs": st.sampled_from([1, 1.0, 2, "1", None]) | JSON,
    "now": SCALARS, "peers": JSON | st.lists(SAFE_TEXT, max_size=3), "pool": JSON,
    "active": st.lists(TASK, max_size=3) | JSON,
    "reserved": st.lists(TASK, max_size=3) | JSON,
    "scheduled": st.lists(TASK | st.fixed_dictionaries({"request": TASK}), max_size=3) | JSON,
})


@settings(max_examples=200, deadline=None)
@given(body=REPLIES | JSON)
def test_parse_reply_returns_a_view_or_raises_garbled_reply(body: Any) -> None:
    try:
        view = parse_reply("w1@host", body)
    except GarbledReply as exc:
        assert str(exc)
    else:
        assert isinstance(view, WorkerView) and view.hostname == "w1@host"


SETTING_NAMES = st.sampled_from([*known_settings(), "ccs_beat_inspect_timout",
                                 "CCS_BEAT_GUARD_DELAY", "CELERY_CCS_BEAT_WORKER_EXPIRY",
                                 "ccs_beat_", "broker_url"])
SETTING_VALUES = (st.floats(0.01, 100) | st.integers(-5, 100) | WORDS | POLICY_DICTS | JSON)


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(SETTING_NAMES, SETTING_VALUES, max_size=5))
def test_load_settings_returns_settings_or_raises_configuration_error(
        values: dict[str, Any]) -> None:
    try:
        result = load_settings(values)
    except ConfigurationError as exc:
        assert "ccs_beat" in str(exc).lower()
    else:
        assert isinstance(result, Settings)


# -- inputs that used to escape as raw Python errors -----------------------------

FORMERLY_RAW = [
    pytest.param(lambda: parse_policy({"expires": 10**400}, where="beat entry 'x': singleton"),
                 ConfigurationError, ["beat entry 'x'", "out of range"], id="huge-int-expires"),
    pytest.param(lambda: load_settings({"ccs_beat_guard_delay": 10**400}),
                 ConfigurationError, ["ccs_beat_guard_delay", "out of range"],
                 id="huge-int-setting"),
    pytest.param(lambda: parse_key_spec("..x", where="beat entry 'x': singleton",
                                        from_code=True),
                 ConfigurationError, ["beat entry 'x'", "'..x'", "cannot be imported"],
                 id="relative-dotted-key"),
    pytest.param(lambda: task_key("t", [10**5000], {}, DEFAULT_KEY),
                 UnkeyableError, ["arguments of t", "ValueError"], id="int-too-long-to-print"),
    pytest.param(lambda: task_key("t", ["\ud800"], {}, DEFAULT_KEY),
                 UnkeyableError, ["arguments of t"], id="lone-surrogate"),
    pytest.param(lambda: task_key("t", [_self_containing()], {}, DEFAULT_KEY),
                 UnkeyableError, ["arguments of t", "RecursionError"], id="self-containing-list"),
    pytest.param(lambda: key_from_text(5), ConfigurationError, ["key must be text", "5"],
                 id="django-key-not-text"),
]


def _self_containing() -> list:
    items: list = []
    items.append(items)
    return items


@pytest.mark.parametrize(("call", "error", "needles"), FORMERLY_RAW)
def test_inputs_that_once_escaped_as_raw_errors_now_name_the_culprit(call, error, needles):
    with pytest.raises(error) as info:
        call()
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


@pytest.mark.parametrize("value", [10**400, float("nan"), float("inf")])
def test_a_reply_whose_clock_no_float_can_hold_is_garbled(value):
    from ccs_beat.replies import GarbledReply, parse_reply
    body = {"ccs": 1, "now": value, "active": [], "reserved": [], "scheduled": []}
    with pytest.raises(GarbledReply):
        parse_reply("w1@h", body)


@pytest.mark.parametrize("value", [10**400, float("nan"), float("inf")])
def test_a_task_whose_time_start_no_float_can_hold_is_dropped(value):
    from ccs_beat.replies import parse_reply
    body = {"ccs": 1, "now": 100.0, "reserved": [], "scheduled": [],
            "active": [{"id": "a", "name": "t", "args": [], "kwargs": {}, "time_start": value}]}
    view = parse_reply("w1@h", body)
    assert view.tasks == () and [d.task_id for d in view.dropped] == ["a"]


@pytest.mark.parametrize(("body", "needles"), [
    pytest.param(reply(reserved=[{"name": "gc", "args": [1]}]),
                 ["reserved item", "string id", "'gc'"], id="reply-task-without-id"),
    pytest.param(reply(active=[{"id": 17, "name": "gc"}]),
                 ["active item", "string id", "17"], id="reply-task-with-int-id"),
    pytest.param(reply(scheduled=[{"eta": None, "request": "gc"}]),
                 ["scheduled item", "str", "not a dict"], id="reply-scheduled-request-not-a-dict"),
    pytest.param(reply(active=[{"id": "a", "name": "gc", "time_start": True}]),
                 ["a (gc)", "time_start True"], id="reply-bool-time-start"),
])
def test_a_malformed_task_in_a_reply_is_dropped_naming_the_culprit(body, needles):
    from ccs_beat.replies import parse_reply
    view = parse_reply("w1@h", body)
    assert len(view.dropped) == 1
    message = view.dropped[0].describe()
    missing = [s for s in needles if s not in message]
    assert not missing, f"{missing} not in {message!r}"
