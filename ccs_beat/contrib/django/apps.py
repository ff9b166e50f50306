"""Django app configuration for ``ccs_beat.contrib.django``."""

from __future__ import annotations

from django.apps import AppConfig


class SingletonBeatConfig(AppConfig):
    """Registers the models and tells beat when a singleton setting changes."""

    name = "ccs_beat.contrib.django"
    label = "ccs_beat"
    verbose_name = "Singleton periodic tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models import signals

        from .models import SingletonSettings, schedule_changed

        # django-celery-beat reloads its schedule when PeriodicTasks.last_update
        # moves; saving or deleting one of our rows must move it too.
        signals.post_save.connect(schedule_changed, sender=SingletonSettings,
                                  dispatch_uid="ccs_beat_settings_saved")
        signals.post_delete.connect(schedule_changed, sender=SingletonSettings,
                                    dispatch_uid="ccs_beat_settings_deleted")
