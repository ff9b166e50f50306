"""Admin: singleton settings on the PeriodicTask pages.

django-celery-beat's ``PeriodicTaskAdmin`` is replaced by a subclass that adds

* the singleton settings inline on the change page,
* a "Singleton" column and filter on the change list,
* bulk actions "Make singleton" and "Allow overlap",
* the last decision beat made (read-only),
* a "Run selected tasks" that honours the singleton setting (see
  :mod:`ccs_beat.contrib.django.manual`).

Editing the settings, and every action on the change list (django-celery-beat's
enable / disable / toggle included, which declare no permission of their own),
needs the change permission on periodic tasks, the same right that edits the
task itself; a view-only user gets no action.
"""

from __future__ import annotations

from typing import Any

import django_celery_beat.admin  # noqa: F401 - registers PeriodicTaskAdmin before we replace it
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html
from django_celery_beat.admin import PeriodicTaskAdmin, PeriodicTaskForm
from django_celery_beat.models import PeriodicTask

from ...policy import SKIP, Policy, Settings
from .conf import current_settings, task_policy_default
from .manual import run_now
from .models import SingletonDecision, SingletonSettings
from .schedulers import arguments_problem, fields_problem, load_problem

CHANGE_PERIODIC_TASK = "django_celery_beat.change_periodictask"
INLINE_FIELDS = ("enabled", "overlap", "key", "on_unknown", "expires")


class SingletonSettingsForm(forms.ModelForm):
    """The inline's form: a task without a row starts from the app default."""

    class Meta:
        model = SingletonSettings
        fields = INLINE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance._state.adding and "enabled" in self.fields:
            default = _default_policy()
            self.fields["enabled"].initial = default is None or default.checked
            if default is not None and default.checked:
                self.fields["overlap"].initial = default.overlap


class SingletonSettingsFormSet(BaseInlineFormSet):
    """Refuses singleton settings the task's own arguments cannot be keyed with
    (``[NaN]`` under identity ``args``), and arguments the app default cannot
    key when the task has no row: beat would leave the task out with an ERROR
    nobody reads in the admin. Runs even when the inline is left untouched."""

    def clean(self) -> None:
        super().clean()
        settings = current_settings()
        if settings is None or any(form.errors for form in self.forms):
            return
        rows = [form for form in self.forms if not self._should_delete_form(form)
                and (not form.instance._state.adding or form.has_changed())]
        fields = ({name: rows[0].cleaned_data.get(name) for name in INLINE_FIELDS}
                  if rows else None)
        problem = arguments_problem(self.instance, fields, settings,
                                    task_policy_default(self.instance.task, settings))
        if problem:
            raise ValidationError(f"{problem}. Give the task arguments that are JSON "
                                  "values, or an identity that leaves them out "
                                  "('name', 'kwargs:a,b'), or switch singleton off.")


class SingletonSettingsInline(admin.StackedInline):
    model = SingletonSettings
    form = SingletonSettingsForm
    formset = SingletonSettingsFormSet
    fields = INLINE_FIELDS
    extra = 1
    max_num = 1
    can_delete = True
    verbose_name = "singleton setting"
    verbose_name_plural = "Singleton (ccs_beat): do not start while an identical task runs"

    # the right to toggle follows the right to change the periodic task
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("django_celery_beat.view_periodictask") or \
            request.user.has_perm(CHANGE_PERIODIC_TASK)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(CHANGE_PERIODIC_TASK)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(CHANGE_PERIODIC_TASK)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(CHANGE_PERIODIC_TASK)


class SingletonFilter(admin.SimpleListFilter):
    title = "singleton"
    parameter_name = "singleton"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("on", "On"), ("off", "Off (overlap allowed)"),
                ("default", "Not set (app default)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "on":
            return queryset.filter(singleton__enabled=True)
        if value == "off":
            return queryset.filter(singleton__enabled=False)
        if value == "default":
            return queryset.filter(singleton__isnull=True)
        return queryset


def beat_would_refuse(task: PeriodicTask, settings: Settings,
                      fields: dict[str, Any] | None = None) -> str | None:
    """Why beat would leave ``task`` out of its schedule with singleton
    settings ``fields`` (default: its row as stored, or none), or None. Asked
    before anything switches a task on, so nobody learns it from beat's log."""
    if fields is None:
        row = getattr(task, "singleton", None)
        fields = row.fields() if row is not None else None
    checked = fields is not None and fields.get("enabled") is not False
    default = task_policy_default(task.task, settings)
    return (load_problem(task)
            or (fields_problem(fields, settings, f"periodic task {task.name!r}", default)
                if checked and fields is not None else None)
            or arguments_problem(task, fields, settings, default))


class SingletonPeriodicTaskForm(PeriodicTaskForm):
    """The task form. For a user who may add but not change -- who gets no
    singleton section, whose checks then never run -- it refuses arguments the
    app default cannot key: beat would leave the new task out."""

    ccs_check_default = False

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        settings = current_settings()
        if not self.ccs_check_default or settings is None or self.errors:
            return cleaned
        probe = PeriodicTask(name=cleaned.get("name") or "", task=cleaned.get("task") or "",
                             args=cleaned.get("args") or "[]",
                             kwargs=cleaned.get("kwargs") or "{}")
        problem = arguments_problem(probe, None, settings,
                                    task_policy_default(probe.task, settings))
        if problem:
            raise ValidationError(f"{problem}. Give the task arguments that are JSON values, "
                                  "or ask someone who may change periodic tasks to give it "
                                  "an identity that leaves them out.")
        return cleaned


def _zone_of(moment: Any) -> str:
    """The zone a stored time is in: UTC when aware (USE_TZ), else Django's
    TIME_ZONE, in which ``timezone.now()`` wrote it."""
    from django.conf import settings as django_settings
    if getattr(moment, "tzinfo", None) is not None:
        return moment.tzname() or "UTC"
    return str(getattr(django_settings, "TIME_ZONE", None) or "local time")


def _default_policy() -> Policy | None:
    """``ccs_beat_default_policy`` of the current Celery app (None if it is bad)."""
    settings = current_settings()
    return settings.default_policy if settings is not None else None


def _default_description() -> str:
    policy = _default_policy()
    if policy is None:
        return "app default"
    return "app default: " + ("off" if not policy.checked else policy.overlap)


class SingletonPeriodicTaskAdmin(PeriodicTaskAdmin):
    inlines = [*PeriodicTaskAdmin.inlines, SingletonSettingsInline]
    list_display = (*PeriodicTaskAdmin.list_display, "singleton_state", "singleton_last")
    list_filter = [SingletonFilter, *PeriodicTaskAdmin.list_filter]
    actions = (*PeriodicTaskAdmin.actions, "make_singleton", "allow_overlap")
    readonly_fields = (*PeriodicTaskAdmin.readonly_fields, "singleton_last_decision")
    fieldsets = (*PeriodicTaskAdmin.fieldsets,
                 ("Singleton: last decision", {"fields": ("singleton_last_decision",),
                                               "classes": ("extrapretty", "wide")}))

    form = SingletonPeriodicTaskForm

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and not request.user.has_perm(CHANGE_PERIODIC_TASK):
            form = type(form.__name__, (form,), {"ccs_check_default": True})
        return form

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        inlines = super().get_inline_instances(request, obj)
        if obj is None and not request.user.has_perm(CHANGE_PERIODIC_TASK):
            # the add page of a user who may add but not change: the singleton
            # fields need the change permission, and offering them would take
            # input and drop it without a word
            inlines = [i for i in inlines if not isinstance(i, SingletonSettingsInline)]
        return inlines

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("singleton", "singleton_decision")

    # -- columns ----------------------------------------------------------------

    @admin.display(description="singleton", ordering="singleton__enabled")
    def singleton_state(self, obj: PeriodicTask) -> str:
        row = getattr(obj, "singleton", None)
        if row is None:
            return _default_description()
        return f"on ({row.overlap})" if row.enabled else "off"

    @admin.display(description="last singleton decision")
    def singleton_last(self, obj: PeriodicTask) -> str:
        decision = getattr(obj, "singleton_decision", None)
        if decision is None:
            return "-"
        return f"{decision.decision} {decision.decided_at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="last decision")
    def singleton_last_decision(self, obj: PeriodicTask) -> str:
        decision = SingletonDecision.objects.filter(periodic_task_id=obj.pk).first() \
            if obj.pk else None
        if decision is None:
            return "beat has not decided on this task yet"
        parts = [format_html("<b>{}</b> at {} {}: {}", decision.decision,
                             f"{decision.decided_at:%Y-%m-%d %H:%M:%S}",
                             _zone_of(decision.decided_at), decision.reason)]
        if decision.task_id:
            parts.append(format_html("sent as task {}", decision.task_id))
        if decision.blocker_id:
            parts.append(format_html("blocked by task {} ({}{})", decision.blocker_id,
                                     decision.blocker_state,
                                     f" on {decision.blocker_worker}"
                                     if decision.blocker_worker else ""))
        return format_html("<br>".join(["{}"] * len(parts)), *parts)

    # -- actions ----------------------------------------------------------------

    # django-celery-beat's own actions declare no permission, so Django offers
    # them to anyone who can see the change list: a view-only user could
    # disable every task. Each action here needs the right its effect needs.

    @admin.action(description=PeriodicTaskAdmin.enable_tasks.short_description,
                  permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().enable_tasks(request, self._switchable(request, queryset))

    @admin.action(description=PeriodicTaskAdmin.disable_tasks.short_description,
                  permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().disable_tasks(request, queryset)

    @admin.action(description=PeriodicTaskAdmin.toggle_tasks.short_description,
                  permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().toggle_tasks(request, self._switchable(request, queryset))

    def _switchable(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """``queryset`` less the switched-off tasks beat would leave out once
        switched on, each named in a message."""
        settings = current_settings()
        if settings is None:
            return queryset
        refused = []
        for task in queryset.filter(enabled=False).select_related("singleton"):
            problem = beat_would_refuse(task, settings)
            if problem:
                refused.append(task.pk)
                self.message_user(request, f"{task.name} left off: {problem}",
                                  level=messages.ERROR)
        return queryset.exclude(pk__in=refused)

    def _filter_actions_by_permissions(self, request: HttpRequest,
                                       actions: list[Any]) -> list[Any]:
        """An action that declares no permission -- one a later django-celery-beat
        adds -- needs the change permission too: actions here all change or send."""
        allowed = super()._filter_actions_by_permissions(request, actions)
        if self.has_change_permission(request):
            return allowed
        return [action for action in allowed
                if getattr(action[0], "allowed_permissions", None)]

    def _set_singleton(self, queryset: QuerySet, enabled: bool,
                       ids: list[int] | None = None) -> int:
        ids = list(queryset.values_list("pk", flat=True)) if ids is None else ids
        existing = SingletonSettings.objects.filter(periodic_task_id__in=ids)
        existing.update(enabled=enabled)   # tells beat (SingletonSettingsQuerySet)
        have = set(existing.values_list("periodic_task_id", flat=True))
        SingletonSettings.objects.bulk_create(
            [SingletonSettings(periodic_task_id=pk, enabled=enabled, overlap=SKIP)
             for pk in ids if pk not in have])
        return len(ids)

    @admin.action(description="Make selected tasks singleton", permissions=["change"])
    def make_singleton(self, request: HttpRequest, queryset: QuerySet) -> None:
        settings = current_settings()
        ok: list[tuple[Any, str | None]] = []
        refused: list[tuple[Any, str | None]] = []
        for task in queryset.select_related("singleton"):
            row = getattr(task, "singleton", None)
            fields = row.fields() if row is not None else {"enabled": True, "overlap": SKIP}
            fields["enabled"] = True
            # a row a script wrote may hold a field beat would refuse: say so
            # here, or the task would vanish from the schedule after "success"
            problem = beat_would_refuse(task, settings, fields) if settings else None
            (refused if problem else ok).append((task, problem))
        count = self._set_singleton(queryset, True, ids=[task.pk for task, _ in ok])
        if count:
            self.message_user(request, f"{count} task(s) are now singleton: beat will not "
                                       "emit them while an identical task is queued or "
                                       "running.")
        for task, problem in refused:
            self.message_user(request, f"{task.name} left unchanged: {problem}",
                              level=messages.ERROR)

    @admin.action(description="Allow overlap for selected tasks", permissions=["change"])
    def allow_overlap(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = self._set_singleton(queryset, False)
        self.message_user(request, f"{count} task(s) now allow overlap: beat emits them "
                                   "on schedule whatever is running.")

    @admin.action(description="Run selected tasks (singletons only if none is running)",
                  permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.celery_app.loader.import_default_modules()
        runs = run_now(self.celery_app, queryset.select_related("singleton"))
        sent = [r for r in runs if r.task_id]
        if sent:
            self.message_user(request, f"{len(sent)} task(s) sent: "
                              + ", ".join(f"{r.name} ({r.task_id})" for r in sent))
        for run in runs:
            if run.skipped:
                self.message_user(request, f"{run.name} not sent, it is a singleton: "
                                  f"{run.skipped}", level=messages.WARNING)
            elif run.error:
                self.message_user(request, f"{run.name} not sent: {run.error}",
                                  level=messages.ERROR)


if admin.site.is_registered(PeriodicTask):
    admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, SingletonPeriodicTaskAdmin)
