"""The Celery app of the example project: settings from Django, tasks from its apps.

``celery -A example_project worker`` and ``celery -A example_project beat``
find this module by name. Beat uses ``CELERY_BEAT_SCHEDULER`` from the
settings: ccs_beat's ``SingletonDatabaseScheduler``, which reads each periodic
task's singleton setting from the database (the admin edits it).
"""

from __future__ import annotations

import os

from celery import Celery

import ccs_beat  # noqa: F401 - workers answer beat's one-broadcast cluster read

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
