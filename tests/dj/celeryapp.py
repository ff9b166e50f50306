"""The Celery app for real worker and beat processes in the Django tests:
:mod:`tests.integration.proj`'s app and tasks, with Django set up first so
that beat can use ``SingletonDatabaseScheduler``."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.dj.settings")

import django

django.setup()

from tests.integration.proj import app, guarded, sleep  # noqa: E402

__all__ = ["app", "guarded", "sleep"]
