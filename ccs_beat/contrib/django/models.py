"""Per periodic task singleton settings, the last decision, and beat's ledger.

* :class:`SingletonSettings` -- what the admin edits: one row per
  ``PeriodicTask`` (one-to-one). No row means ``ccs_beat_default_policy``.
* :class:`SingletonDecision` -- what beat last decided for a periodic task
  (emitted or skipped, when, why, which task blocked it), shown read-only in
  the admin.
* :class:`SingletonLedger` -- the ids beat emitted that may still be queued or
  running, so a restarted beat (or one on another host) still knows them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from ...identity import NO_KEY_FUNCTIONS
from ...policy import BUFFER_ONE, EMIT, SKIP
from .conf import current_settings
from .options import field_errors, singleton_option

OVERLAP_CHOICES = [
    (SKIP, "skip: do not emit while an identical task is queued or running"),
    (BUFFER_ONE, "buffer_one: remember one missed run, emit it when the running one ends"),
]
ON_UNKNOWN_CHOICES = [
    ("", "app default"),
    (EMIT, "emit: send it anyway (fail open)"),
    (SKIP, "skip: do not send it (fail closed)"),
]


def schedule_changed(**_: Any) -> None:
    """Tell every DatabaseScheduler to reload its schedule."""
    PeriodicTasks.update_changed()


class SingletonSettingsQuerySet(models.QuerySet):
    """Bulk writes skip model signals; these tell beat about them anyway."""

    def update(self, **kwargs: Any) -> int:
        rows = super().update(**kwargs)
        schedule_changed()
        return rows

    def bulk_create(self, *args: Any, **kwargs: Any) -> list:
        objs = super().bulk_create(*args, **kwargs)
        schedule_changed()
        return objs

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        rows = super().bulk_update(*args, **kwargs)
        schedule_changed()
        return rows

    def delete(self) -> tuple[int, dict[str, int]]:
        result = super().delete()
        schedule_changed()
        return result


class SingletonSettings(models.Model):
    """Singleton settings of one periodic task (data anyone with the change
    permission writes: see :func:`~ccs_beat.identity.parse_key_spec`)."""

    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.CASCADE, primary_key=True, related_name="singleton",
        verbose_name="periodic task")
    enabled = models.BooleanField(
        "singleton", default=True,
        help_text="Do not emit this task while an identical task is queued or running.")
    overlap = models.CharField(
        "when one is running", max_length=16, choices=OVERLAP_CHOICES, default=SKIP)
    key = models.CharField(
        "identity", max_length=200, blank=True, default="",
        help_text="What makes two tasks identical. Empty: the app default; "
                  "'args': task name + arguments; 'name': task name only; "
                  "'kwargs:a,b': task name + those keyword arguments; "
                  "or the short name of a key function registered in the "
                  "ccs_beat_key_functions setting.")
    on_unknown = models.CharField(
        "if a worker does not answer", max_length=8, choices=ON_UNKNOWN_CHOICES,
        blank=True, default="")
    expires = models.FloatField(
        "message expiry (seconds)", null=True, blank=True,
        help_text="Empty: until the next due time, less min(1 s, 10 %).")
    changed_at = models.DateTimeField(auto_now=True)

    objects = SingletonSettingsQuerySet.as_manager()

    class Meta:
        verbose_name = "singleton setting"
        verbose_name_plural = "singleton settings"

    def __str__(self) -> str:
        # shown as the inline's heading, under the periodic task's own name;
        # and a deleted row (its primary key is the task's) has no task any more
        return self.describe()

    def describe(self) -> str:
        if not self.enabled:
            return "overlap allowed"
        return f"singleton ({self.overlap})"

    def fields(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "overlap": self.overlap, "key": self.key,
                "on_unknown": self.on_unknown, "expires": self.expires}

    def as_option(self) -> bool | dict[str, Any]:
        """The ``singleton`` entry option for this row (may raise ConfigurationError)."""
        return singleton_option(**self.fields())

    def clean(self) -> None:
        settings = current_settings()
        errors = field_errors(self.fields(), functions=settings.key_functions
                              if settings is not None else NO_KEY_FUNCTIONS)
        if errors:
            raise ValidationError(errors)


class SingletonDecision(models.Model):
    """The last decision beat made for a periodic task."""

    EMITTED = "emitted"
    SKIPPED = "skipped"

    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.CASCADE, primary_key=True,
        related_name="singleton_decision")
    decision = models.CharField(max_length=8, choices=[(EMITTED, "emitted"),
                                                        (SKIPPED, "skipped")])
    decided_at = models.DateTimeField()
    reason = models.TextField(blank=True, default="")
    task_id = models.CharField("emitted task id", max_length=255, blank=True, default="")
    blocker_id = models.CharField("blocked by task", max_length=255, blank=True, default="")
    blocker_state = models.CharField(max_length=16, blank=True, default="")
    blocker_worker = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        verbose_name = "singleton decision"

    def __str__(self) -> str:
        return f"{self.decision} at {self.decided_at:%Y-%m-%d %H:%M:%S}: {self.reason}"


class SingletonLedger(models.Model):
    """Beat's ledger (see :mod:`ccs_beat.ledger`), one row per beat schedule."""

    name = models.CharField(max_length=100, primary_key=True)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "singleton ledger"

    def __str__(self) -> str:
        return self.name


class SingletonJournal(models.Model):
    """Write-ahead records of emissions not yet in the saved ledger.

    Beat inserts one row before each singleton message is published and
    deletes them when it saves :class:`SingletonLedger` (same transaction), so
    a beat killed in between replays them at start instead of forgetting a
    message that may still be queued."""

    ledger = models.CharField(max_length=100, db_index=True)
    seq = models.BigIntegerField()
    record = models.JSONField()

    class Meta:
        verbose_name = "singleton ledger journal record"

    def __str__(self) -> str:
        return f"{self.ledger} #{self.seq}"
