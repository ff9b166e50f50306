"""Exceptions raised by ccs_beat.

They subclass Celery's own ``ImproperlyConfigured`` so that code which already
handles Celery configuration mistakes handles ours too.
"""

from __future__ import annotations

from celery.exceptions import ImproperlyConfigured


class ConfigurationError(ImproperlyConfigured):
    """A ``ccs_beat_*`` setting or an entry's ``singleton`` option is invalid.

    The message always names the culprit (the setting or the entry) and the
    offending value, because it is raised at beat startup where the user has
    to find it in their configuration.
    """


class UnkeyableError(ConfigurationError, ValueError):
    """A task's arguments cannot be turned into a stable identity key."""
