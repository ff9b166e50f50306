"""ccs_beat: Celery beat that emits a periodic task only when no identical task
is already queued or running anywhere in the cluster.

Importing this package also registers the ``ccs_snapshot`` inspect command, so
a worker that imports it answers beat's fast cluster read.
"""

from __future__ import annotations

from . import control as _control  # noqa: F401 - registers the worker's inspect command
from .errors import ConfigurationError, UnkeyableError
from .identity import KeySpec, task_key
from .policy import Policy, Settings, parse_policy
from .scheduler import SingletonScheduler, SingletonSchedulerMixin
from .task import SingletonTask

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "KeySpec",
    "Policy",
    "Settings",
    "SingletonScheduler",
    "SingletonSchedulerMixin",
    "SingletonTask",
    "UnkeyableError",
    "__version__",
    "parse_policy",
    "task_key",
]
