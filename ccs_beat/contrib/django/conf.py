"""The ccs_beat settings of the Celery app a Django process uses.

The admin validates a row against the same settings beat will use -- above all
``ccs_beat_key_functions``, the only functions a row may name -- so it reads
them from Celery's current app, as django-celery-beat's admin does.
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigurationError
from ...logs import get_logger
from ...policy import Policy, Settings, load_settings

logger = get_logger("ccs_beat")


def current_settings(app: Any = None) -> Settings | None:
    """``app``'s (default: Celery's current app) settings, or None when they are
    invalid (beat refuses to start and says why; the admin must still load)."""
    if app is None:
        from celery import current_app
        app = current_app
    try:
        return load_settings(app.conf)
    except ConfigurationError as exc:
        logger.warning("ccs_beat: the Celery settings are invalid (%s); the admin checks "
                       "singleton settings against the defaults", exc)
        return None


def task_policy_default(task: str, settings: Settings, app: Any = None) -> Policy:
    """What a periodic task of ``task`` without a singleton row gets: the task's
    declaration, else the app default (as beat decides it). A bad declaration
    is beat's error to report; the admin falls back to the app default."""
    from ...policies import task_default
    if app is None:
        from celery import current_app
        app = current_app
    try:
        return task_default(app, task, settings)
    except ConfigurationError:
        return settings.default_policy
