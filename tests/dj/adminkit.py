"""Helpers for tests that drive the real Django admin with the test client:
read a change form as a browser would submit it, post a changelist action,
read the messages and the schedule-changed marker."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any

from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask, PeriodicTasks

CHANGELIST = reverse("admin:django_celery_beat_periodictask_changelist")
PREFIX = "singleton"  # the inline's formset prefix: related_name of the one-to-one field
INLINE_FIELDS = ("enabled", "overlap", "key", "on_unknown", "expires")
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


# -- helpers --------------------------------------------------------------------


def change_url(task: PeriodicTask) -> str:
    return reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])


class _FormReader(HTMLParser):
    """The values a browser would submit for one ``<form>`` (by id)."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, list[str]] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._textarea: str | None = None

    def _add(self, name: str, value: str) -> None:
        self.fields.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(name, a.get("value", "on"))
                return
            self._add(name, a.get("value", ""))
        elif tag == "select" and name:
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in a:
                self._add(self._select, value)
                self._select_chosen = True
        elif tag == "textarea" and name:
            self._textarea = name
            self._add(name, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            if not self._select_chosen and self._select_first is not None:
                self._add(self._select, self._select_first)
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea][-1] += data


def form_fields(html: str, form_id: str = "periodictask_form") -> dict[str, Any]:
    """The submittable fields of the change form, without the inline templates."""
    reader = _FormReader(form_id)
    reader.feed(html)
    return {name: values[0] if len(values) == 1 else values
            for name, values in reader.fields.items() if "__prefix__" not in name}


def inline_form(response: Any) -> Any:
    """The singleton inline's (single) bound form from a change page response."""
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.prefix == PREFIX:
            return inline.formset.forms[0]
    raise AssertionError("no singleton inline on the page")


def message_texts(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def mark_schedule_seen() -> None:
    """Pretend beat has just loaded the schedule: last_change is long ago."""
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": LONG_AGO})


def schedule_changed_since_seen() -> bool:
    last = PeriodicTasks.last_change()
    return last is not None and last > LONG_AGO


def changelist_rows(html: str) -> dict[str, dict[str, str]]:
    """``{task name: {column: text}}`` for the singleton columns of the change list."""
    rows: dict[str, dict[str, str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        name = re.search(r'class="field-name"><a [^>]*>([^<]*)</a>', row)
        if not name:
            continue
        rows[name.group(1)] = {
            column: re.search(rf'class="field-{column}">([^<]*)<', row).group(1)
            for column in ("singleton_state", "singleton_last")
        }
    return rows


def action_choices(client: Client) -> set[str]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    return set(re.findall(r'<option value="([a-z_]+)"', response.content.decode()))


def post_action(client: Client, action: str, tasks: list[PeriodicTask]) -> Any:
    return client.post(CHANGELIST, {"action": action, "index": "0", "select_across": "0",
                                    "_selected_action": [str(t.pk) for t in tasks]})


def get_change_form(client: Client, task: PeriodicTask) -> dict[str, Any]:
    response = client.get(change_url(task))
    assert response.status_code == 200
    return form_fields(response.content.decode())
