"""The singleton settings in the Django admin (``ccs_beat.contrib.django.admin``).

Everything here goes through the real admin views with the Django test client
(SQLite in memory); no broker is needed: the one test of "Run selected tasks"
only selects tasks whose singleton row is bad, which ``run_now`` reports
before it would read the cluster or send anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from django.contrib.admin import site
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory
from django.urls import reverse
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from ccs_beat.contrib.django.admin import SingletonPeriodicTaskAdmin, SingletonSettingsInline
from ccs_beat.contrib.django.models import SingletonDecision, SingletonSettings
from tests.dj.adminkit import (
    CHANGELIST,
    INLINE_FIELDS,
    PREFIX,
    action_choices,
    change_url,
    changelist_rows,
    form_fields,
    get_change_form,
    inline_form,
    mark_schedule_seen,
    message_texts,
    post_action,
    schedule_changed_since_seen,
)

# -- change page: the inline ---------------------------------------------------------


def test_change_page_shows_singleton_inline(admin_client: Client, task: PeriodicTask) -> None:
    response = admin_client.get(change_url(task))
    assert response.status_code == 200
    html = response.content.decode()
    fields = form_fields(html)
    for name in INLINE_FIELDS:
        assert f"{PREFIX}-0-{name}" in fields, name
    assert fields[f"{PREFIX}-TOTAL_FORMS"] == "1"
    assert fields[f"{PREFIX}-INITIAL_FORMS"] == "0"
    assert fields[f"{PREFIX}-MAX_NUM_FORMS"] == "1"
    assert 'id="singleton-group"' in html


def test_change_page_inline_shows_the_existing_row(admin_client: Client,
                                                   task: PeriodicTask) -> None:
    SingletonSettings.objects.create(periodic_task=task, enabled=False, overlap="buffer_one",
                                     key="kwargs:region", on_unknown="emit", expires=45)
    fields = get_change_form(admin_client, task)
    assert fields[f"{PREFIX}-INITIAL_FORMS"] == "1"
    assert f"{PREFIX}-0-enabled" not in fields  # unchecked box
    assert fields[f"{PREFIX}-0-overlap"] == "buffer_one"
    assert fields[f"{PREFIX}-0-key"] == "kwargs:region"
    assert fields[f"{PREFIX}-0-on_unknown"] == "emit"
    assert float(fields[f"{PREFIX}-0-expires"]) == 45


def test_saving_the_inline_creates_the_settings_row_and_marks_the_schedule_changed(
        admin_client: Client, task: PeriodicTask) -> None:
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-overlap": "buffer_one",
                 f"{PREFIX}-0-key": "kwargs:region", f"{PREFIX}-0-on_unknown": "skip",
                 f"{PREFIX}-0-expires": "30"})
    mark_schedule_seen()

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302, response.content.decode()[-3000:]
    row = SingletonSettings.objects.get(periodic_task=task)
    assert (row.enabled, row.overlap, row.key, row.on_unknown, row.expires) == \
        (True, "buffer_one", "kwargs:region", "skip", 30.0)
    assert row.as_option() == {"overlap": "buffer_one", "key": ["region"],
                               "on_unknown": "skip", "expires": 30.0}
    # The admin saves the PeriodicTask (which bumps last_change itself) before the
    # inline; only a bump from saving the settings row can come after the row's time.
    assert schedule_changed_since_seen()
    assert PeriodicTasks.last_change() >= row.changed_at


def test_editing_the_inline_updates_the_row(admin_client: Client, task: PeriodicTask) -> None:
    SingletonSettings.objects.create(periodic_task=task, enabled=True, overlap="skip")
    data = get_change_form(admin_client, task)
    data.pop(f"{PREFIX}-0-enabled", None)  # untick "singleton"
    data[f"{PREFIX}-0-key"] = "name"

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302
    row = SingletonSettings.objects.get(periodic_task=task)
    assert (row.enabled, row.key) == (False, "name")
    assert SingletonSettings.objects.count() == 1


def test_deleting_the_inline_removes_the_row_and_marks_the_schedule_changed(
        admin_client: Client, task: PeriodicTask) -> None:
    SingletonSettings.objects.create(periodic_task=task, enabled=True)
    data = get_change_form(admin_client, task)
    data[f"{PREFIX}-0-DELETE"] = "on"
    mark_schedule_seen()

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302
    assert not SingletonSettings.objects.filter(periodic_task=task).exists()
    assert schedule_changed_since_seen()


@pytest.mark.parametrize(("key", "message"), [
    ("kwargs:1bad", "keyword argument names"),
    ("no such thing", "unknown key spec"),
    ("nonexistent.module.func", "ccs_beat_key_functions"),
])
def test_invalid_key_spec_is_rejected_with_a_field_error(
        admin_client: Client, task: PeriodicTask, key: str, message: str) -> None:
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-key": key,
                 "description": "edited together with a bad key"})

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    errors = inline_form(response).errors
    assert set(errors) == {"key"}, errors
    assert message in errors["key"][0]
    assert message in response.content.decode()
    assert not SingletonSettings.objects.exists()
    task.refresh_from_db()
    assert task.description == ""  # nothing of the form was saved


def test_negative_expires_is_rejected(admin_client: Client, task: PeriodicTask) -> None:
    data = get_change_form(admin_client, task)
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-expires": "-5"})

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    errors = inline_form(response).errors
    assert set(errors) == {"expires"}, errors
    assert not SingletonSettings.objects.exists()


def test_negative_expires_on_an_existing_row_leaves_it_unchanged(
        admin_client: Client, task: PeriodicTask) -> None:
    SingletonSettings.objects.create(periodic_task=task, enabled=True, expires=10)
    data = get_change_form(admin_client, task)
    data[f"{PREFIX}-0-expires"] = "-1"

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    assert "expires" in inline_form(response).errors
    assert SingletonSettings.objects.get(periodic_task=task).expires == 10


@pytest.mark.parametrize(("field", "value"), [
    ("overlap", "sometimes"),
    ("key", "kwargs:1bad"),
    ("key", "no such thing"),
    ("key", "nonexistent.module.func"),
    ("on_unknown", "maybe"),
    ("expires", -1.0),
])
def test_model_clean_puts_each_bad_value_on_its_own_field(
        task: PeriodicTask, field: str, value: Any) -> None:
    row = SingletonSettings(periodic_task=task, enabled=True)
    setattr(row, field, value)
    with pytest.raises(ValidationError) as caught:
        row.clean()
    assert set(caught.value.message_dict) == {field}


def test_model_clean_accepts_a_valid_row(task: PeriodicTask) -> None:
    row = SingletonSettings(periodic_task=task, enabled=True, overlap="buffer_one",
                            key="kwargs:region", on_unknown="emit", expires=1.5)
    row.clean()  # no exception
    row.full_clean()


def test_deleting_a_periodic_task_deletes_its_singleton_row(
        admin_client: Client, task: PeriodicTask) -> None:
    SingletonSettings.objects.create(periodic_task=task, enabled=True)
    url = reverse("admin:django_celery_beat_periodictask_delete", args=[task.pk])
    assert "Singleton setting" in admin_client.get(url).content.decode()  # listed as deleted
    mark_schedule_seen()

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    assert not SingletonSettings.objects.exists()
    assert schedule_changed_since_seen()


# -- change page: the last decision ------------------------------------------------


def test_last_decision_is_shown_read_only(admin_client: Client, task: PeriodicTask) -> None:
    SingletonDecision.objects.create(
        periodic_task=task, decision=SingletonDecision.SKIPPED,
        decided_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        reason="an identical task is <running>", blocker_id="blocker-7f3a",
        blocker_state="STARTED", blocker_worker="celery@host-b")

    response = admin_client.get(change_url(task))

    assert response.status_code == 200
    html = response.content.decode()
    block = re.search(r'class="form-row field-singleton_last_decision">(.*?)</fieldset>',
                      html, flags=re.S)
    assert block, "no last decision on the change page"
    shown = block.group(1)
    assert '<div class="readonly">' in shown
    assert "<b>skipped</b> at 2024-05-06 07:08:09 UTC" in shown
    assert "an identical task is &lt;running&gt;" in shown  # escaped, not markup
    assert "blocked by task blocker-7f3a (STARTED on celery@host-b)" in shown
    assert "<input" not in shown and "<textarea" not in shown
    fields = form_fields(html)
    assert not any("decision" in name for name in fields)
    assert "blocker-7f3a" not in fields.values()


def test_change_page_says_when_beat_has_not_decided_yet(admin_client: Client,
                                                       task: PeriodicTask) -> None:
    html = admin_client.get(change_url(task)).content.decode()
    assert "beat has not decided on this task yet" in html


def test_emitted_decision_shows_the_task_id(admin_client: Client, task: PeriodicTask) -> None:
    SingletonDecision.objects.create(
        periodic_task=task, decision=SingletonDecision.EMITTED,
        decided_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        reason="nothing identical running", task_id="sent-1234")
    html = admin_client.get(change_url(task)).content.decode()
    assert "sent as task sent-1234" in html
    assert "blocked by" not in html


# -- change list -----------------------------------------------------------------


def test_changelist_shows_singleton_column_and_filters_on_off_default(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    on, off, default = make_task("on task"), make_task("off task"), make_task("default task")
    SingletonSettings.objects.create(periodic_task=on, enabled=True, overlap="buffer_one")
    SingletonSettings.objects.create(periodic_task=off, enabled=False)
    assert default.pk  # no row

    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    rows = changelist_rows(html)
    assert rows["on task"]["singleton_state"] == "on (buffer_one)"
    assert rows["off task"]["singleton_state"] == "off"
    assert rows["default task"]["singleton_state"].startswith("app default")
    for value in ("on", "off", "default"):
        assert f"?singleton={value}" in html, value

    def names(value: str) -> set[str]:
        filtered = admin_client.get(CHANGELIST, {"singleton": value})
        assert filtered.status_code == 200
        return {t.name for t in filtered.context["cl"].result_list}

    assert names("on") == {"on task"}
    assert names("off") == {"off task"}
    assert names("default") == {"default task"}


def test_changelist_shows_the_last_decision_column(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    decided, undecided = make_task("decided"), make_task("undecided")
    SingletonDecision.objects.create(
        periodic_task=decided, decision=SingletonDecision.SKIPPED,
        decided_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert undecided.pk

    rows = changelist_rows(admin_client.get(CHANGELIST).content.decode())

    assert rows["decided"]["singleton_last"] == "skipped 2024-01-02 03:04:05"
    assert rows["undecided"]["singleton_last"] == "-"


def test_make_singleton_action_creates_and_enables_rows(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    new, disabled, untouched = make_task("new"), make_task("disabled"), make_task("untouched")
    SingletonSettings.objects.create(periodic_task=disabled, enabled=False,
                                     overlap="buffer_one")
    assert "make_singleton" in action_choices(admin_client)
    mark_schedule_seen()

    response = post_action(admin_client, "make_singleton", [new, disabled])

    assert response.status_code == 302
    rows = {r.periodic_task_id: r for r in SingletonSettings.objects.all()}
    assert set(rows) == {new.pk, disabled.pk}
    assert untouched.pk not in rows
    assert rows[new.pk].enabled and rows[new.pk].overlap == "skip"
    assert rows[disabled.pk].enabled and rows[disabled.pk].overlap == "buffer_one"
    assert schedule_changed_since_seen()
    assert any(level == "info" and "2 task(s) are now singleton" in text
               for level, text in message_texts(response))


def test_make_singleton_action_on_new_rows_only_marks_the_schedule_changed(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    first, second = make_task("first"), make_task("second")
    mark_schedule_seen()

    post_action(admin_client, "make_singleton", [first, second])

    assert SingletonSettings.objects.filter(enabled=True).count() == 2
    assert schedule_changed_since_seen()


def test_allow_overlap_action_disables_rows(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    enabled, no_row, other = make_task("enabled"), make_task("no row"), make_task("other")
    SingletonSettings.objects.create(periodic_task=enabled, enabled=True, key="name")
    SingletonSettings.objects.create(periodic_task=other, enabled=True)
    assert "allow_overlap" in action_choices(admin_client)
    mark_schedule_seen()

    response = post_action(admin_client, "allow_overlap", [enabled, no_row])

    assert response.status_code == 302
    rows = {r.periodic_task_id: r for r in SingletonSettings.objects.all()}
    assert rows[enabled.pk].enabled is False
    assert rows[enabled.pk].key == "name"  # only the switch changes
    assert rows[no_row.pk].enabled is False  # an explicit "off" row now
    assert rows[other.pk].enabled is True  # not selected
    assert schedule_changed_since_seen()
    assert any("2 task(s) now allow overlap" in text for _, text in message_texts(response))


# -- permissions ---------------------------------------------------------------------


def test_user_without_change_permission_cannot_toggle(
        client: Client, staff_user: Callable[..., Any], task: PeriodicTask) -> None:
    SingletonSettings.objects.create(periodic_task=task, enabled=True, key="name")
    client.force_login(staff_user("viewer", "view_periodictask"))

    offered = action_choices(client)
    assert "make_singleton" not in offered
    assert "allow_overlap" not in offered
    assert "run_tasks" not in offered   # sending needs the change permission too

    mark_schedule_seen()
    response = post_action(client, "allow_overlap", [task])
    assert response.status_code == 200   # no action offered: the change list again
    row = SingletonSettings.objects.get(periodic_task=task)
    assert row.enabled is True
    assert not schedule_changed_since_seen()

    page = client.get(change_url(task))
    assert page.status_code == 200
    html = page.content.decode()
    fields = form_fields(html)
    assert not any(f"{PREFIX}-0-{name}" in fields for name in INLINE_FIELDS)
    assert 'id="singleton-group"' in html  # shown, read-only
    assert '<div class="readonly">name</div>' in html  # the row's key

    data = {f"{PREFIX}-TOTAL_FORMS": "1", f"{PREFIX}-INITIAL_FORMS": "1",
            f"{PREFIX}-MIN_NUM_FORMS": "0", f"{PREFIX}-MAX_NUM_FORMS": "1",
            f"{PREFIX}-0-periodic_task": str(task.pk), f"{PREFIX}-0-key": "args"}
    response = client.post(change_url(task), data)
    assert response.status_code == 403
    row.refresh_from_db()
    assert (row.enabled, row.key) == (True, "name")


def every_action_name() -> list[str]:
    """Every action the admin defines or inherits, site-wide ones included."""
    model_admin = SingletonPeriodicTaskAdmin(PeriodicTask, site)
    return sorted(name for _, name, _ in model_admin._get_base_actions())


def test_the_action_list_covers_the_inherited_actions() -> None:
    # the premise of the test below: django-celery-beat's actions are there
    assert {"enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks",
            "make_singleton", "allow_overlap", "delete_selected"} <= set(every_action_name())


@pytest.mark.parametrize("action", every_action_name())
def test_a_view_only_user_can_run_no_action(
        client: Client, staff_user: Callable[..., Any],
        make_task: Callable[..., PeriodicTask], action: str) -> None:
    on, off = make_task("on", enabled=True), make_task("off", enabled=False)
    client.force_login(staff_user("viewer", "view_periodictask"))
    assert action not in action_choices(client)
    mark_schedule_seen()

    response = post_action(client, action, [on, off])

    # with no action to offer, Django shows the change list again (200)
    assert response.status_code == 200
    assert not message_texts(response)
    assert {t.name: t.enabled for t in PeriodicTask.objects.all()} == {"on": True, "off": False}
    assert not SingletonSettings.objects.exists()
    assert not schedule_changed_since_seen()


@pytest.mark.parametrize(("action", "after"), [
    ("enable_tasks", {"on": True, "off": True}),
    ("disable_tasks", {"on": False, "off": False}),
    ("toggle_tasks", {"on": False, "off": True}),
])
def test_a_user_with_change_permission_can_enable_disable_and_toggle(
        client: Client, staff_user: Callable[..., Any],
        make_task: Callable[..., PeriodicTask], action: str, after: dict[str, bool]) -> None:
    on, off = make_task("on", enabled=True), make_task("off", enabled=False)
    client.force_login(staff_user("editor", "view_periodictask", "change_periodictask"))
    assert action in action_choices(client)

    post_action(client, action, [on, off])

    assert {t.name: t.enabled for t in PeriodicTask.objects.all()} == after


def test_user_with_change_permission_can_toggle(
        client: Client, staff_user: Callable[..., Any], task: PeriodicTask) -> None:
    client.force_login(staff_user("editor", "view_periodictask", "change_periodictask"))

    offered = action_choices(client)
    assert {"make_singleton", "allow_overlap"} <= offered

    data = get_change_form(client, task)
    for name in INLINE_FIELDS:
        assert f"{PREFIX}-0-{name}" in data, name
    data.update({f"{PREFIX}-0-enabled": "on", f"{PREFIX}-0-key": "name"})
    response = client.post(change_url(task), data)
    assert response.status_code == 302
    assert SingletonSettings.objects.get(periodic_task=task).key == "name"

    response = post_action(client, "allow_overlap", [task])
    assert response.status_code == 302
    assert SingletonSettings.objects.get(periodic_task=task).enabled is False


def test_inline_permissions_follow_the_periodic_task_permissions(
        staff_user: Callable[..., Any], task: PeriodicTask) -> None:
    # A user needs no ccs_beat permission: the right on the periodic task decides.
    inline = SingletonSettingsInline(PeriodicTask, site)
    request = RequestFactory().get("/")

    def rights(user: Any) -> tuple[bool, bool, bool, bool]:
        request.user = user
        return (inline.has_view_permission(request, task),
                inline.has_add_permission(request, task),
                inline.has_change_permission(request, task),
                inline.has_delete_permission(request, task))

    assert rights(staff_user("viewer", "view_periodictask")) == (True, False, False, False)
    assert rights(staff_user("editor", "change_periodictask")) == (True, True, True, True)
    assert rights(staff_user("nobody")) == (False, False, False, False)


# -- beat is told about every write ---------------------------------------------------


def test_bulk_queryset_update_marks_schedule_changed(make_task: Callable[..., PeriodicTask]
                                                     ) -> None:
    SingletonSettings.objects.create(periodic_task=make_task("a"), enabled=True)
    mark_schedule_seen()

    updated = SingletonSettings.objects.filter(enabled=True).update(enabled=False)

    assert updated == 1
    assert schedule_changed_since_seen()


@pytest.mark.parametrize("write", ["save", "delete", "update", "bulk_create", "bulk_update",
                                   "queryset_delete"])
def test_every_write_to_singleton_settings_marks_schedule_changed(
        make_task: Callable[..., PeriodicTask], write: str) -> None:
    task = make_task("t")
    existing = SingletonSettings.objects.create(periodic_task=make_task("existing"))
    mark_schedule_seen()

    if write == "save":
        SingletonSettings(periodic_task=task, enabled=False).save()
    elif write == "delete":
        existing.delete()
    elif write == "update":
        SingletonSettings.objects.filter(pk=existing.pk).update(overlap="buffer_one")
    elif write == "bulk_create":
        SingletonSettings.objects.bulk_create([SingletonSettings(periodic_task=task)])
    elif write == "bulk_update":
        existing.enabled = False
        SingletonSettings.objects.bulk_update([existing], ["enabled"])
    else:
        SingletonSettings.objects.filter(pk=existing.pk).delete()

    assert schedule_changed_since_seen()


# -- run selected tasks ---------------------------------------------------------------


def test_run_selected_tasks_reports_tasks_it_could_not_send_because_of_bad_rows(
        admin_client: Client, make_task: Callable[..., PeriodicTask]) -> None:
    # Bad rows are reported before run_now reads the cluster or sends anything,
    # so this needs no broker (and says nothing about singleton behaviour).
    bad_overlap, bad_key = make_task("bad overlap"), make_task("bad key")
    SingletonSettings.objects.create(periodic_task=bad_overlap, enabled=True)
    SingletonSettings.objects.create(periodic_task=bad_key, enabled=True)
    SingletonSettings.objects.filter(pk=bad_overlap.pk).update(overlap="sometimes")
    SingletonSettings.objects.filter(pk=bad_key.pk).update(key="kwargs:1bad")

    response = post_action(admin_client, "run_tasks", [bad_overlap, bad_key])

    assert response.status_code == 302
    messages = message_texts(response)
    errors = [text for level, text in messages if level == "error"]
    assert len(errors) == 2, messages
    overlap_error = next(t for t in errors if t.startswith("bad overlap not sent: "))
    assert "periodic task 'bad overlap'" in overlap_error
    assert "sometimes" in overlap_error
    key_error = next(t for t in errors if t.startswith("bad key not sent: "))
    assert "periodic task 'bad key'" in key_error
    assert not any("task(s) sent" in text for _, text in messages)


@pytest.mark.parametrize(("headers", "why"), [
    ("{not json", "headers are not usable JSON"),
    ("[1, 2]", "headers must be a JSON object"),
])
def test_run_selected_tasks_names_a_task_whose_headers_are_not_a_json_object(
        admin_client: Client, make_task: Callable[..., PeriodicTask],
        headers: str, why: str) -> None:
    task = make_task("odd headers")
    PeriodicTask.objects.filter(pk=task.pk).update(headers=headers)   # past the form

    response = post_action(admin_client, "run_tasks", [task])

    assert response.status_code == 302
    errors = [text for level, text in message_texts(response) if level == "error"]
    assert len(errors) == 1, message_texts(response)
    assert errors[0].startswith("odd headers not sent: ")
    assert "periodic task 'odd headers'" in errors[0] and why in errors[0]


@pytest.mark.parametrize(("default", "ticked"), [("skip", True), (False, False)])
def test_a_task_without_a_row_starts_from_the_app_default(
        admin_client: Client, task: PeriodicTask, default: Any, ticked: bool) -> None:
    from celery import current_app
    before = current_app.conf.get("ccs_beat_default_policy")
    current_app.conf.ccs_beat_default_policy = default
    try:
        fields = form_fields(admin_client.get(change_url(task)).content.decode())
    finally:
        current_app.conf.ccs_beat_default_policy = before
    assert bool(fields.get(f"{PREFIX}-0-enabled")) is ticked


def test_a_user_who_may_add_but_not_change_gets_no_singleton_inline_to_fill_in(
        client: Client, staff_user: Callable[..., Any]) -> None:
    # the inline needs the change permission: offering its fields on the add
    # page would take input and drop it without a word
    client.force_login(staff_user("adder", "view_periodictask", "add_periodictask"))

    page = client.get(reverse("admin:django_celery_beat_periodictask_add"))

    assert page.status_code == 200
    fields = form_fields(page.content.decode())
    assert "name" in fields
    assert not any(name.startswith(f"{PREFIX}-") for name in fields), sorted(fields)


def test_a_user_who_may_change_gets_the_singleton_inline_on_the_add_page(
        client: Client, staff_user: Callable[..., Any]) -> None:
    client.force_login(staff_user("editor", "view_periodictask", "add_periodictask",
                                  "change_periodictask"))

    page = client.get(reverse("admin:django_celery_beat_periodictask_add"))

    assert f"{PREFIX}-0-overlap" in form_fields(page.content.decode())
