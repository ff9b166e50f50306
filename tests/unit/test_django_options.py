"""The stored form of a periodic task's singleton settings (pure, no database)."""

from __future__ import annotations

import pytest

from ccs_beat import ConfigurationError, parse_policy
from ccs_beat.contrib.django.options import (
    field_errors,
    key_from_text,
    key_to_text,
    singleton_option,
)
from ccs_beat.identity import parse_key_functions, parse_key_spec
from ccs_beat.policy import Policy


@pytest.mark.parametrize(("text", "option"), [
    ("", None), ("  ", None), (None, None), ("args", "args"), ("name", "name"),
    ("kwargs:user_id", ["user_id"]), ("kwargs: a , b", ["a", "b"]),
    ("tests.unit.keyfuncs:by_user", "tests.unit.keyfuncs:by_user"),
    ("os.path.basename", "os.path.basename"),
])
def test_key_text_maps_to_the_key_option(text, option):
    assert key_from_text(text) == option


def test_a_bare_word_that_names_no_registered_function_is_rejected_with_the_accepted_forms():
    with pytest.raises(ConfigurationError, match=r"'user_id'.*'args', 'name'.*"
                                                 r"ccs_beat_key_functions"):
        parse_key_spec(key_from_text("user_id"), where="t")


REGISTERED = parse_key_functions({"base": "os.path.basename"})


@pytest.mark.parametrize("text", ["args", "name", "kwargs:a,b", "base", "os.path.basename"])
def test_key_text_round_trips_through_a_key_spec(text):
    spec = parse_key_spec(key_from_text(text), where="t", functions=REGISTERED)
    assert key_to_text(spec) == text


def test_disabled_row_is_overlap_allowed():
    assert singleton_option(False, "buffer_one", "name") is False
    assert not parse_policy(singleton_option(False)).checked


def test_blank_fields_take_the_app_default():
    default = Policy(overlap="buffer_one", on_unknown="skip", expires=30.0)
    option = singleton_option(True, "", "", "", None)
    assert option is True
    assert parse_policy(option, default=default) == default


def test_set_fields_override_the_app_default():
    option = singleton_option(True, "skip", "kwargs:tenant", "skip", 12.5)
    assert option == {"overlap": "skip", "key": ["tenant"], "on_unknown": "skip",
                      "expires": 12.5}
    policy = parse_policy(option, default=Policy(overlap="buffer_one"))
    assert (policy.overlap, policy.key.kwargs, policy.on_unknown, policy.expires) == (
        "skip", ("tenant",), "skip", 12.5)


@pytest.mark.parametrize(("fields", "bad"), [
    ({"overlap": "sometimes"}, "overlap"),
    ({"key": "kwargs:1bad"}, "key"),
    ({"key": "no_such_module_ccs.func"}, "key"),
    ({"key": "user_id"}, "key"),
    ({"on_unknown": "maybe"}, "on_unknown"),
    ({"expires": -1}, "expires"),
    ({"expires": "soon"}, "expires"),
    ({"enabled": "yes"}, "enabled"),
])
def test_each_bad_field_is_reported_against_that_field(fields, bad):
    errors = field_errors(fields)
    assert list(errors) == [bad]
    assert not errors[bad].startswith("singleton:")


def test_a_valid_row_has_no_errors():
    assert field_errors({"enabled": True, "overlap": "buffer_one", "key": "kwargs:a",
                         "on_unknown": "skip", "expires": 30}) == {}


def test_an_unknown_overlap_names_the_closest_choice():
    assert "did you mean 'buffer_one'" in field_errors({"overlap": "buffer-one"})["overlap"]
