"""A small Django project that shows ccs_beat at work: ``python -m example_project.demo``.

The Celery app is imported here, as Django projects usually do, so that
``@shared_task`` tasks bind to it in every process that loads Django.
"""

from __future__ import annotations

from .celery import app as celery_app

__all__ = ["celery_app"]
