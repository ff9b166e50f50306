"""Task identity keys: equal for identical tasks, in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccs_beat import ConfigurationError, UnkeyableError, task_key
from ccs_beat.identity import KeySpec, canonical_json, parse_key_functions, parse_key_spec

REPO = Path(__file__).resolve().parents[2]


def by_tenant(name, args, kwargs):
    """A user key function: one run per tenant."""
    return f"{name}/{kwargs.get('tenant')}"


def test_kwargs_order_does_not_change_the_key():
    assert task_key("t", [1], {"a": 1, "b": 2}) == task_key("t", [1], {"b": 2, "a": 1})


def test_tuple_and_list_arguments_are_the_same_after_a_json_round_trip():
    assert task_key("t", (1, (2, 3)), {}) == task_key("t", [1, [2, 3]], {})


def test_different_arguments_or_names_give_different_keys():
    base = task_key("t", [1], {"a": 1})
    assert base != task_key("t", [2], {"a": 1})
    assert base != task_key("t", [1], {"a": 2})
    assert base != task_key("u", [1], {"a": 1})
    assert task_key("t", [1], {}) != task_key("t", [1.0], {})       # int and float differ


def test_name_spec_ignores_all_arguments():
    spec = parse_key_spec("name", where="e")
    assert task_key("t", [1], {"a": 1}, spec) == task_key("t", [], {}, spec) == "t"


def test_kwargs_spec_uses_only_the_named_keyword_arguments():
    spec = parse_key_spec(["tenant"], where="e")
    assert task_key("t", [1], {"tenant": "x", "n": 1}, spec) == \
        task_key("t", [2], {"tenant": "x", "n": 2}, spec)
    assert task_key("t", [], {"tenant": "x"}, spec) != task_key("t", [], {"tenant": "y"}, spec)


def test_kwargs_spec_tells_a_missing_argument_from_none():
    spec = parse_key_spec(["tenant"], where="e")
    assert task_key("t", [], {}, spec) != task_key("t", [], {"tenant": None}, spec)


def test_key_function_by_dotted_path_in_code_by_registered_name_and_by_object():
    registered = parse_key_functions({"tenant": "tests.unit.test_keys.by_tenant"})
    by_path = parse_key_spec("tests.unit.test_keys.by_tenant", where="e", from_code=True)
    by_colon = parse_key_spec("tests.unit.test_keys:by_tenant", where="e", from_code=True)
    by_name = parse_key_spec("tenant", where="e", functions=registered)
    by_object = parse_key_spec(by_tenant, where="e", from_code=True)
    for spec in (by_path, by_colon, by_name, by_object):
        assert task_key("t", [], {"tenant": "a", "x": 1}, spec) == "t/a"


def test_key_function_must_return_a_string():
    spec = KeySpec(kind="callable", path="lambda", func=lambda n, a, k: 42)
    with pytest.raises(UnkeyableError, match="must return a non-empty str"):
        task_key("t", [], {}, spec)


@pytest.mark.parametrize(("args", "kwargs", "path"), [
    ([1, {1, 2}], {}, "args[1]"),
    ([b"raw"], {}, "args[0]"),
    ([uuid.uuid4()], {}, "args[0]"),
    ([], {"when": datetime(2026, 1, 1)}, "kwargs['when']"),
    ([object()], {}, "args[0]"),
    ([float("nan")], {}, "args[0]"),
    ([{1: "int key"}], {}, "args[0]"),
    ([], {"deep": {"list": [1, {"x": {2}}]}}, "kwargs['deep']['list'][1]['x']"),
])
def test_unkeyable_arguments_raise_an_error_naming_the_argument(args, kwargs, path):
    with pytest.raises(UnkeyableError) as info:
        task_key("t", args, kwargs)
    assert path in str(info.value)


@pytest.mark.parametrize("value", ["argz", "", 3, ["not an identifier"], [], ["a", "a"]])
def test_unknown_key_spec_names_the_value(value):
    with pytest.raises(ConfigurationError) as info:
        parse_key_spec(value, where="beat entry 'gc'")
    assert "beat entry 'gc'" in str(info.value)


def test_unimportable_key_function_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match=r"no_such_module\.f"):
        parse_key_spec("no_such_module.f", where="e")


def test_keys_are_equal_across_interpreters_with_different_hash_seeds():
    shapes = [
        ("t", [1, "é", 2.5, True, None], {"z": {"b": [1, 2], "a": "x"}, "a": 1}),
        ("users.update_all", [], {}),
        ("blobs.gc", [{f"k{i}": i for i in range(50)}], {"bucket": "b"}),
    ]
    program = (
        "import json, sys\n"
        "from ccs_beat import task_key\n"
        "shapes = json.loads(sys.stdin.read())\n"
        "print(json.dumps([task_key(n, a, k) for n, a, k in shapes]))\n")
    outputs = []
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        done = subprocess.run([sys.executable, "-c", program], input=json.dumps(shapes),
                              capture_output=True, text=True, env=env, timeout=60, check=True)
        outputs.append(json.loads(done.stdout))
    here = [task_key(n, a, k) for n, a, k in shapes]
    assert outputs[0] == outputs[1] == here
    assert len(set(here)) == len(here)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.randoms())
def test_key_is_invariant_under_kwargs_reordering(kwargs, rnd):
    items = list(kwargs.items())
    rnd.shuffle(items)
    assert task_key("t", [], kwargs) == task_key("t", [], dict(items))


@given(json_values)
def test_canonical_json_round_trips_to_an_equal_value(value):
    assert json.loads(canonical_json(value)) == value


@pytest.mark.parametrize("returned", ["tenant=a\x00b", "tenant=a\nforged", "\x1b[31m"])
def test_a_key_with_control_characters_is_refused_naming_the_function(returned):
    # a key function builds keys from arguments anyone who sends the task picks;
    # a NUL would make the ledger unsaveable on PostgreSQL
    spec = parse_key_spec(lambda name, args, kwargs: returned, where="test", from_code=True)
    with pytest.raises(UnkeyableError, match="control characters"):
        task_key("t", [], {"tenant": returned}, spec)
