"""The admin refuses singleton settings that the task's own arguments cannot
be keyed with, before it saves them.

Beat would leave such a task out of the schedule with an ERROR in its log,
which nobody reads from the admin; so the change page says why at save time,
and "Make singleton" says which rows it could not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django_celery_beat.models import PeriodicTask

from ccs_beat.contrib.django.models import SingletonSettings
from tests.dj.adminkit import PREFIX, change_url, get_change_form, message_texts, post_action


def inline_errors(response: Any) -> list[str]:
    """The singleton inline's formset-level errors on a change page response."""
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.prefix == PREFIX:
            return [str(e) for e in inline.formset.non_form_errors()]
    raise AssertionError("no singleton inline on the page")


@pytest.mark.parametrize(("args", "kwargs", "key", "why"), [
    ("[NaN]", "{}", "args", "arguments cannot be keyed"),
    ("[]", '{"x": NaN}', "kwargs:x", "arguments cannot be keyed"),
    ("[Infinity]", "{}", "", "arguments cannot be keyed"),   # the app default: args
    # not a list, not an object: beat could not send it at all
    ("5", "{}", "name", "args must be a JSON list and kwargs a JSON object"),
    ("[]", "[1]", "name", "args must be a JSON list and kwargs a JSON object"),
], ids=["nan-args-identity-args", "nan-kwarg-identity-kwargs-x", "infinity-default-identity",
        "args-not-a-list-identity-name", "kwargs-not-an-object-identity-name"])
def test_saving_settings_the_arguments_cannot_be_keyed_with_is_refused_with_the_reason(
        admin_client: Client, make_task: Callable[..., PeriodicTask],
        args: str, kwargs: str, key: str, why: str) -> None:
    task = make_task("nan", args=args, kwargs=kwargs)
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-key": key})

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    errors = inline_errors(response)
    assert len(errors) == 1 and why in errors[0], errors
    assert "periodic task 'nan'" in errors[0]
    assert not SingletonSettings.objects.exists()


def test_an_identity_that_leaves_the_bad_argument_out_is_accepted(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    task = make_task("nan", args="[NaN]", kwargs='{"tenant": "acme"}')
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-key": "kwargs:tenant"})

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302
    assert SingletonSettings.objects.get(periodic_task=task).key == "kwargs:tenant"


def test_editing_arguments_the_default_policy_cannot_key_is_refused_with_the_inline_untouched(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    task = make_task("plain", args="[1]")
    data = get_change_form(admin_client, task)
    data["args"] = "[NaN]"   # the inline is left as it is: no row, the default policy

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    assert "arguments cannot be keyed" in inline_errors(response)[0]
    task.refresh_from_db()
    assert task.args == "[1]"


def test_singleton_off_accepts_any_arguments(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    task = make_task("free", args="[NaN]")
    data = get_change_form(admin_client, task)
    data.pop(f"{PREFIX}-0-enabled", None)   # unticked: overlap allowed
    data[f"{PREFIX}-0-key"] = "args"

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302
    assert SingletonSettings.objects.get(periodic_task=task).enabled is False


def test_make_singleton_changes_the_rows_it_can_and_names_those_it_cannot(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    fine, bad = make_task("fine", args="[1]"), make_task("bad", args="[Infinity]")
    SingletonSettings.objects.create(periodic_task=bad, enabled=False)

    response = post_action(admin_client, "make_singleton", [fine, bad])

    assert SingletonSettings.objects.get(periodic_task=fine).enabled is True
    assert SingletonSettings.objects.get(periodic_task=bad).enabled is False
    messages = message_texts(response)
    errors = [text for level, text in messages if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("bad left unchanged: ")
    assert "arguments cannot be keyed" in errors[0]
    assert any(level == "info" and text.startswith("1 task(s) are now singleton")
               for level, text in messages), messages


def test_a_user_who_may_only_add_cannot_add_a_task_the_default_policy_cannot_key(
        client: Client, staff_user: Callable[..., Any], interval: Any) -> None:
    # no singleton section for them (it needs the change permission): the task
    # form itself must refuse what beat would leave out of the schedule
    from django.urls import reverse

    from tests.dj.adminkit import form_fields
    client.force_login(staff_user("adder", "view_periodictask", "add_periodictask"))
    url = reverse("admin:django_celery_beat_periodictask_add")
    data = {k: v for k, v in form_fields(client.get(url).content.decode()).items()
            if v is not None}
    data.update({"name": "nan job", "regtask": "", "task": "tests.sleep",
                 "interval": str(interval.pk), "args": "[NaN]", "kwargs": "{}",
                 "enabled": "on"})

    response = client.post(url, data)

    assert response.status_code == 200
    assert "arguments cannot be keyed" in response.content.decode()
    assert not PeriodicTask.objects.filter(name="nan job").exists()


@pytest.mark.parametrize("action", ["enable_tasks", "toggle_tasks"])
def test_switching_on_a_task_beat_would_leave_out_is_refused_naming_it(
        admin_client: Client, make_task: Callable[..., PeriodicTask], action: str) -> None:
    bad = make_task("nan job", args="[NaN]", enabled=False)
    fine = make_task("fine job", args="[1]", enabled=False)

    response = post_action(admin_client, action, [bad, fine])

    bad.refresh_from_db()
    fine.refresh_from_db()
    assert bad.enabled is False and fine.enabled is True
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("nan job left off: "), errors
    assert "arguments cannot be keyed" in errors[0]


@pytest.mark.parametrize("field", ["headers", "interval"])
def test_switching_on_a_task_beat_cannot_load_is_refused_naming_it(
        admin_client: Client, make_task: Callable[..., PeriodicTask], field: str) -> None:
    from django_celery_beat.models import IntervalSchedule
    if field == "headers":
        bad = make_task("bad job", headers="[1]", enabled=False)
    else:
        huge = IntervalSchedule.objects.create(every=10**9, period=IntervalSchedule.DAYS)
        bad = PeriodicTask.objects.create(name="bad job", task="tests.dj.noop",
                                          interval=huge, enabled=False)

    response = post_action(admin_client, "enable_tasks", [bad])

    bad.refresh_from_db()
    assert bad.enabled is False
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("bad job left off: "), errors
