"""A ``key`` read from a database row or a Redis entry is data, never code.

Whoever can write a periodic task's row or a redbeat entry chooses the task
name and its arguments too; if their ``key`` text could name any importable
function, ``os.execve`` with task ``/bin/sh`` would be a shell as the beat
user. Stored text may name only ``args``, ``name``, keyword argument names or
a function the application registered in code (``ccs_beat_key_functions``, or
a dotted path its ``beat_schedule`` itself writes). These tests pin that rule
at the parsers every adapter goes through; ``tests/dj/test_stored_key_rows.py``
and the redbeat integration test pin it in the schedulers, the admin and the
CLI.
"""

from __future__ import annotations

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import schedule

from ccs_beat import ConfigurationError, task_key
from ccs_beat.coordinator import Coordinator
from ccs_beat.identity import parse_key_functions, parse_key_spec
from ccs_beat.policy import load_settings, parse_policy

ROW = "periodic task 'gc': singleton settings"


def tenant_key(name, args, kwargs):
    return f"{name}/{kwargs.get('tenant')}"


@pytest.mark.parametrize("text", ["os.execve", "os:system", "subprocess.call"])
def test_stored_key_naming_a_dotted_path_is_refused_naming_the_setting(text):
    with pytest.raises(ConfigurationError) as info:
        parse_policy({"key": text}, where=ROW)
    message = str(info.value)
    assert ROW in message and repr(text) in message
    assert "ccs_beat_key_functions" in message


def test_stored_key_naming_a_module_does_not_import_it(import_probe):
    with pytest.raises(ConfigurationError, match="not registered"):
        parse_policy({"key": import_probe.path}, where=ROW)
    assert not import_probe.imported


def test_the_same_path_written_in_code_is_imported(import_probe):
    # the probe is a valid key function: only where the text came from differs
    spec = parse_key_spec(import_probe.path, where="task 'gc'", from_code=True)
    assert import_probe.imported
    assert task_key("gc", [], {}, spec) == "probe"


def test_a_registered_short_name_names_the_registered_function():
    settings = load_settings({"ccs_beat_key_functions": {"tenant": f"{__name__}.tenant_key"}})
    policy = parse_policy({"key": "tenant"}, where=ROW, functions=settings.key_functions)
    assert task_key("gc", [], {"tenant": "acme"}, policy.key) == "gc/acme"
    assert policy.key.as_option() == "tenant"   # what a row stores back


def test_a_registered_function_may_also_be_named_by_its_registered_path():
    functions = parse_key_functions({"tenant": f"{__name__}.tenant_key"})
    spec = parse_key_spec(f"{__name__}.tenant_key", where=ROW, functions=functions)
    assert task_key("gc", [], {"tenant": "a"}, spec) == "gc/a"


def test_a_path_written_in_beat_schedule_is_accepted_back_from_stored_text(import_probe):
    # Django and redbeat copy a beat_schedule entry's key into a row / a Redis
    # entry and read it back as stored text: the path the code wrote is trusted
    conf = {"beat_schedule": {"gc": {"task": "gc", "schedule": 10.0,
                                     "options": {"singleton": {"key": import_probe.path}}}}}
    settings = load_settings(conf)
    policy = parse_policy({"key": import_probe.path}, where=ROW,
                          functions=settings.key_functions)
    assert task_key("gc", [], {}, policy.key) == "probe"


def test_a_short_name_nobody_registered_is_refused_listing_the_registered_ones():
    functions = parse_key_functions({"tenant": f"{__name__}.tenant_key"})
    with pytest.raises(ConfigurationError, match=r"unknown key spec 'region'.*registered: tenant"):
        parse_key_spec("region", where=ROW, functions=functions)


def test_coordinator_refuses_an_entry_whose_stored_key_names_an_unregistered_function(
        import_probe, caplog):
    # redbeat hands beat entries decoded from Redis: their options are stored text
    app = Celery("ccs_stored_key", broker="memory://", set_as_current=False)
    try:
        coordinator = Coordinator(app, sender=None)
        entry = ScheduleEntry(name="gc", task="tests.sleep", schedule=schedule(10.0),
                              args=["/bin/sh", "-c", "id"], app=app,
                              options={"singleton": {"key": import_probe.path}})
        with caplog.at_level("ERROR", logger="ccs_beat"):
            verdict = coordinator.judge(entry)
        assert verdict.decision is None and verdict.key is None
        assert "beat entry 'gc'" in caplog.text and "ccs_beat_key_functions" in caplog.text
        assert not import_probe.imported
        with pytest.raises(ConfigurationError, match="ccs_beat_key_functions"):
            coordinator.validate({"gc": entry})
        assert not import_probe.imported
    finally:
        app.close()


class CallableFromADecoder:
    """Like the dateutil weekday redbeat's JSON decoder builds: callable data."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return "called"


def test_a_callable_object_that_came_from_stored_data_is_refused_and_never_called():
    planted = CallableFromADecoder()
    with pytest.raises(ConfigurationError, match="ccs_beat_key_functions"):
        parse_policy({"key": planted}, where=ROW)
    assert planted.calls == 0


def test_a_function_object_in_beat_schedule_is_accepted_and_its_path_comes_back_from_a_row():
    conf = {"beat_schedule": {"gc": {"task": "gc", "schedule": 10.0,
                                     "options": {"singleton": {"key": tenant_key}}}}}
    functions = load_settings(conf).key_functions
    by_object = parse_policy({"key": tenant_key}, where="beat entry 'gc'", functions=functions)
    # the Django scheduler writes the function's module.qualname into the row
    by_path = parse_policy({"key": by_object.key.path}, where=ROW, functions=functions)
    assert task_key("gc", [], {"tenant": "a"}, by_path.key) == "gc/a"
