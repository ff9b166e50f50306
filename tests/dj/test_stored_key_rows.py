"""A periodic task's "identity" field is data: it can never make beat or the
web process import or call a function the application did not register.

Each test writes the identity an attacker with the change permission (or a
script, or a fixture) would write -- the dotted path of a module that leaves a
file behind when imported -- and checks what the scheduler, the admin's form,
"Run selected tasks" and ``celery ccs check`` do with it: refuse it, naming the
task, the field and the setting to use, and import nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import current_app
from django.test import Client
from django_celery_beat.models import PeriodicTask

from ccs_beat import ConfigurationError
from ccs_beat.contrib.django.models import SingletonSettings
from ccs_beat.contrib.django.schedulers import SingletonDatabaseScheduler
from tests.dj.adminkit import (
    PREFIX,
    change_url,
    get_change_form,
    inline_form,
    message_texts,
    post_action,
)

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"


def tenant_key(name, args, kwargs):
    return f"{name}/{kwargs.get('tenant')}"


@pytest.fixture
def registered() -> Iterator[None]:
    """``ccs_beat_key_functions = {"tenant": ...}`` on the admin's Celery app."""
    before = current_app.conf.get("ccs_beat_key_functions")
    current_app.conf.ccs_beat_key_functions = {"tenant": f"{__name__}.tenant_key"}
    yield
    current_app.conf.ccs_beat_key_functions = before


def plant(task: PeriodicTask, key: str) -> None:
    """Write ``key`` into the task's row past the admin's validation, as a
    script, a fixture or an older release would."""
    SingletonSettings.objects.create(periodic_task=task, enabled=True)
    SingletonSettings.objects.filter(pk=task.pk).update(key=key)


def test_beat_leaves_out_a_row_naming_an_unregistered_function_and_names_task_field_setting(
        app, make_task: Callable[..., PeriodicTask], import_probe, caplog):
    shell = make_task("shell", task="/bin/sh", args='["/bin/sh", "-c", "id"]')
    plant(shell, import_probe.path)
    healthy = make_task("healthy", task="tests.sleep")
    with caplog.at_level(logging.ERROR, logger="ccs_beat"):
        beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert "shell" not in beat.schedule
        assert healthy.name in beat.schedule
        error = next(r.getMessage() for r in caplog.records if "'shell'" in r.getMessage())
        assert "periodic task 'shell'" in error
        assert "'identity'" in error and "ccs_beat_key_functions" in error
        assert not import_probe.imported
    finally:
        beat.close()


def test_beat_schedules_a_row_naming_a_registered_function(
        app, make_task: Callable[..., PeriodicTask]):
    app.conf.ccs_beat_key_functions = {"tenant": f"{__name__}.tenant_key"}
    task = make_task("per-tenant", task="tests.sleep", kwargs='{"tenant": "acme"}')
    SingletonSettings.objects.create(periodic_task=task, enabled=True, key="tenant")
    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        entry = beat.schedule["per-tenant"]
        policy = beat.ccs_coordinator.policy_for("per-tenant", entry.options)
        assert beat.ccs_coordinator.policies.key_for(entry, policy) == "tests.sleep/acme"
    finally:
        beat.close()


def test_a_beat_schedule_key_path_survives_the_round_trip_through_its_row(
        app, import_probe):
    # code wrote the path: Django copies it into the row and must accept it back
    app.conf.beat_schedule = {"coded": {
        "task": "tests.sleep", "schedule": 10.0,
        "options": {"singleton": {"key": import_probe.path}}}}
    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert SingletonSettings.objects.get(periodic_task__name="coded").key == \
            import_probe.path
        beat.schedule   # noqa: B018 - reload from the rows
        assert "coded" in beat.all_as_schedule()
        entry = beat.schedule["coded"]
        coordinator = beat.ccs_coordinator
        policy = coordinator.policy_for("coded", entry.options)
        assert coordinator.policies.key_for(entry, policy) == "probe"
    finally:
        beat.close()


def assert_the_reloaded_row_keys_by_tenant(beat: SingletonDatabaseScheduler) -> None:
    """Entry ``coded``, loaded again from its row, keys with the function given in code."""
    reloaded = beat.all_as_schedule()
    assert "coded" in reloaded
    entry = reloaded["coded"]
    policy = beat.ccs_coordinator.policy_for("coded", entry.options)
    assert beat.ccs_coordinator.policies.key_for(entry, policy) == "tests.sleep/acme"


def test_a_beat_schedule_key_function_object_survives_the_round_trip_through_its_row(app):
    app.conf.beat_schedule = {"coded": {
        "task": "tests.sleep", "schedule": 10.0, "kwargs": {"tenant": "acme"},
        "options": {"singleton": {"key": tenant_key}}}}
    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert SingletonSettings.objects.get(periodic_task__name="coded").key == \
            f"{__name__}.tenant_key"
        assert_the_reloaded_row_keys_by_tenant(beat)
    finally:
        beat.close()


def test_admin_refuses_an_unregistered_function_without_importing_it(
        admin_client: Client, task: PeriodicTask, import_probe) -> None:
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-key": import_probe.path})

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    error = inline_form(response).errors["key"][0]
    assert "not registered" in error and "ccs_beat_key_functions" in error
    assert not SingletonSettings.objects.exists()
    assert not import_probe.imported


def test_admin_accepts_a_registered_short_name(
        admin_client: Client, task: PeriodicTask, registered: None) -> None:
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-key": "tenant"})

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302, inline_form(response).errors
    assert SingletonSettings.objects.get(periodic_task=task).key == "tenant"


def test_run_selected_tasks_refuses_a_row_naming_an_unregistered_function(
        admin_client: Client, make_task: Callable[..., PeriodicTask], import_probe) -> None:
    shell = make_task("shell", task="/bin/sh", args='["/bin/sh", "-c", "id"]')
    plant(shell, import_probe.path)

    response = post_action(admin_client, "run_tasks", [shell])

    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("shell not sent: ")
    assert "ccs_beat_key_functions" in errors[0]
    assert not import_probe.imported


def test_ccs_check_reports_a_row_naming_an_unregistered_function(tmp_path, import_probe):
    # a file database shared with the command's own process
    db = tmp_path / "check.sqlite3"
    env = {**os.environ, "CCS_TEST_DJANGO_DB": "sqlite", "CCS_TEST_DJANGO_SQLITE": str(db),
           "DJANGO_SETTINGS_MODULE": "tests.dj.settings",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(import_probe.folder)])}
    setup = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
        "from ccs_beat.contrib.django.models import SingletonSettings\n"
        "every = IntervalSchedule.objects.create(every=10, period='seconds')\n"
        "t = PeriodicTask.objects.create(name='shell', task='/bin/sh', interval=every,\n"
        "                                args='[\"/bin/sh\", \"-c\", \"id\"]')\n"
        "PeriodicTask.objects.create(name='fine', task='tests.sleep', interval=every)\n"
        "SingletonSettings.objects.create(periodic_task=t)\n"
        f"SingletonSettings.objects.filter(pk=t.pk).update(key={import_probe.path!r})\n")
    subprocess.run([sys.executable, "-c", setup], env=env, cwd=REPO, check=True, timeout=120)

    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "tests.dj.celeryapp", "ccs",
                           "check", "--scheduler", SCHEDULER], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "periodic task 'shell'" in proc.stderr
    assert "'identity'" in proc.stderr and "ccs_beat_key_functions" in proc.stderr
    assert "fine" in proc.stdout
    assert not import_probe.marker.exists()



def _closure_key():
    def by_tenant(name, args, kwargs):
        return f"{name}/{kwargs.get('tenant')}"
    return by_tenant


@pytest.mark.parametrize("make_key", [
    lambda: (lambda name, args, kwargs: f"{name}/{kwargs.get('tenant')}"),
    _closure_key,
    lambda: functools.partial(lambda prefix, name, args, kwargs:
                              f"{prefix}{name}/{kwargs.get('tenant')}", ""),
], ids=["lambda", "closure", "partial"])
def test_a_key_function_object_that_cannot_be_imported_by_name_survives_its_row(app, make_key):
    # written in code, so it works as it is: the row names it, and the name is
    # resolved to the very object the configuration holds, never imported
    app.conf.beat_schedule = {"coded": {
        "task": "tests.sleep", "schedule": 10.0, "kwargs": {"tenant": "acme"},
        "options": {"singleton": {"key": make_key()}}}}
    beat = SingletonDatabaseScheduler(app=app, max_interval=1)
    try:
        assert "coded" in beat.schedule
        assert_the_reloaded_row_keys_by_tenant(beat)
    finally:
        beat.close()


def test_two_key_functions_in_code_that_a_row_cannot_tell_apart_stop_beat_naming_them(app):
    app.conf.beat_schedule = {
        name: {"task": "tests.sleep", "schedule": 10.0,
               "options": {"singleton": {"key": lambda n, a, k, tag=name: tag}}}
        for name in ("one", "two")}
    with pytest.raises(ConfigurationError, match="<lambda>"):
        SingletonDatabaseScheduler(app=app, max_interval=1)
