"""Parsing and validating the ``singleton`` option and the ``ccs_beat_*`` settings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccs_beat import ConfigurationError, Policy, parse_policy
from ccs_beat.identity import KeySpec
from ccs_beat.policy import load_settings

WHERE = "beat entry 'nightly-gc': singleton"


@pytest.mark.parametrize(("value", "overlap"), [
    (None, "skip"), (True, "skip"), (False, "allow"),
    ("skip", "skip"), ("buffer_one", "buffer_one"), ("allow", "allow"),
    ({}, "skip"), ({"overlap": "buffer_one"}, "buffer_one"),
])
def test_each_accepted_form_gives_its_overlap(value, overlap):
    assert parse_policy(value, where=WHERE).overlap == overlap


def test_true_turns_checking_on_even_when_the_default_allows_overlap():
    default = Policy(overlap="allow", on_unknown="skip")
    policy = parse_policy(True, default=default)
    assert policy.overlap == "skip" and policy.on_unknown == "skip"


def test_absent_option_takes_the_default_policy():
    default = Policy(overlap="buffer_one", on_unknown="skip", expires=30.0)
    assert parse_policy(None, default=default) is default


def test_dict_replaces_only_the_fields_it_names():
    default = Policy(overlap="buffer_one", on_unknown="skip")
    policy = parse_policy({"key": "name", "expires": 90}, default=default)
    assert policy == Policy(overlap="buffer_one", key=KeySpec(kind="name"), on_unknown="skip",
                            expires=90.0)


def test_policy_round_trips_through_its_option_form():
    policy = parse_policy({"overlap": "buffer_one", "key": ["tenant"], "on_unknown": "skip",
                           "expires": 12})
    assert parse_policy(policy.as_option()) == policy


@pytest.mark.parametrize(("value", "culprit"), [
    ("sometimes", "'sometimes'"),
    ({"overlap": "replace"}, "'replace'"),
    ({"overlapp": "skip"}, "'overlapp'"),
    ({"on_unknown": "retry"}, "'retry'"),
    ({"expires": -1}, "-1"),
    ({"expires": 0}, "0"),
    ({"expires": math.nan}, "nan"),
    ({"expires": 10 ** 9}, "1000000000"),
    ({"expires": True}, "True"),
    ({"expires": "60"}, "'60'"),
    ({"key": "argz"}, "'argz'"),
    (3, "3"),
    ([1], "[1]"),
])
def test_invalid_option_names_the_entry_and_the_value(value, culprit):
    with pytest.raises(ConfigurationError) as info:
        parse_policy(value, where=WHERE)
    assert WHERE in str(info.value)
    assert culprit in str(info.value)


def test_typo_in_overlap_suggests_the_intended_word():
    with pytest.raises(ConfigurationError, match="did you mean 'buffer_one'"):
        parse_policy("buffer-one", where=WHERE)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["overlap", "key", "on_unknown", "expires", "other"]) | st.text(max_size=5),
        c, max_size=4),
    max_leaves=10)


@given(json_like)
def test_parsing_arbitrary_input_either_succeeds_or_raises_configuration_error(value):
    try:
        policy = parse_policy(value, where=WHERE)
    except ConfigurationError as exc:
        assert WHERE in str(exc)
    else:
        assert policy.overlap in ("skip", "buffer_one", "allow")


# -- settings ----------------------------------------------------------------

def test_settings_default_when_nothing_is_set():
    settings = load_settings({"broker_url": "memory://"})
    assert settings.inspect_timeout == 1.0
    assert settings.default_policy.overlap == "skip"


@pytest.mark.parametrize("key", ["ccs_beat_inspect_timeout", "CCS_BEAT_INSPECT_TIMEOUT",
                                 "CELERY_CCS_BEAT_INSPECT_TIMEOUT"])
def test_settings_are_read_in_any_case_and_under_a_django_namespace(key):
    assert load_settings({key: 0.25}).inspect_timeout == 0.25


def test_default_policy_setting_takes_any_option_form():
    settings = load_settings({"ccs_beat_default_policy": {"overlap": "allow"}})
    assert not settings.default_policy.checked


def test_unknown_setting_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigurationError) as info:
        load_settings({"ccs_beat_inspect_timout": 2})
    assert "'ccs_beat_inspect_timout'" in str(info.value)
    assert "did you mean 'ccs_beat_inspect_timeout'" in str(info.value)


@pytest.mark.parametrize(("key", "value"), [
    ("ccs_beat_inspect_timeout", -1), ("ccs_beat_inspect_timeout", 0),
    ("ccs_beat_inspect_timeout", 3600), ("ccs_beat_inspect_timeout", "1"),
    ("ccs_beat_worker_expiry", 0.5), ("ccs_beat_burst_max_age", -0.1),
    ("ccs_beat_buffer_poll_interval", 0), ("ccs_beat_default_policy", "never"),
])
def test_negative_or_absurd_setting_names_the_setting_and_value(key, value):
    with pytest.raises(ConfigurationError) as info:
        load_settings({key: value})
    assert key in str(info.value) and repr(value).strip("'") in str(info.value)


def test_worker_expiry_shorter_than_the_read_timeout_is_rejected():
    with pytest.raises(ConfigurationError, match="ccs_beat_worker_expiry"):
        load_settings({"ccs_beat_inspect_timeout": 5, "ccs_beat_worker_expiry": 2})


@pytest.mark.parametrize("document", ["README.md", "docs/configuration.md"])
def test_every_setting_is_documented_with_its_default(document):
    from pathlib import Path

    from ccs_beat.policy import Settings, known_settings
    text = (Path(__file__).resolve().parents[2] / document).read_text(encoding="utf-8")
    defaults = Settings()
    for name in known_settings():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")),
                   None)
        assert row, f"{name} is missing from {document}'s settings table"
        default = getattr(defaults, name[len("ccs_beat_"):], None)
        if isinstance(default, float):
            assert f"`{default}`" in row, (name, default, row)
