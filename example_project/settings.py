"""Django settings of the ccs_beat example project.

Everything that differs between runs comes from environment variables, so that
``python -m example_project.demo`` can give every run its own directory and the
processes it starts (beat, two workers) all agree on it:

``CCS_DEMO_DIR``
    the run directory: the SQLite database, the bucket, the filesystem
    broker's folders and ``runs.jsonl`` (default: ``example_project/.run``)
``CCS_DEMO_BROKER``
    the broker URL (default ``filesystem://``, no server needed; an
    ``amqp://`` or ``redis://`` URL works the same)
``CCS_DEMO_QUEUE``
    the queue (and control exchange) name, so runs sharing a real broker
    cannot see each other's messages (default ``ccs-demo``)
``CCS_DEMO_BUSY_DAY``
    ``1``: ``users.update_all`` does more work per user and takes longer than
    its period, as on a busy day
``CCS_DEMO_BUCKET_LATENCY``
    seconds per simulated bucket request (default ``0.01``)
"""

from __future__ import annotations

import os
from pathlib import Path

import django

PROJECT_DIR = Path(__file__).resolve().parent
RUN_DIR = Path(os.environ.get("CCS_DEMO_DIR") or PROJECT_DIR / ".run").resolve()
RUN_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "ccs-beat-example-project-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "example_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "ccs_beat.contrib.django",        # after django_celery_beat: it replaces its admin
    "example_project",                # the setup_demo command
    "example_project.blobs",
    "example_project.users",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
STATIC_URL = "/static/"

# Beat and two workers write to one SQLite file at the same time: wait for the
# lock (timeout) instead of failing with "database is locked"; WAL lets beat
# read its schedule while a worker writes, and IMMEDIATE transactions take the
# write lock up front (a deferred one that upgrades cannot wait for it).
_sqlite_options: dict[str, object] = {"timeout": 30}
if django.VERSION >= (5, 1):
    _sqlite_options.update({"init_command": "PRAGMA journal_mode=WAL;",
                            "transaction_mode": "IMMEDIATE"})
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": RUN_DIR / "db.sqlite3",
    "OPTIONS": _sqlite_options,
}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # "No hostname was supplied": the filesystem transport has no host, and needs none
    "loggers": {"kombu.connection": {"level": "ERROR"}},
}

# -- the demo's own knobs ---------------------------------------------------------

#: where the bucket that stands in for S3/GCS keeps its objects
DEMO_BUCKET_DIR = RUN_DIR / "bucket"
#: seconds per bucket request (HEAD, DELETE, a page of LIST), like a cloud round trip
DEMO_BUCKET_LATENCY = float(os.environ.get("CCS_DEMO_BUCKET_LATENCY", "0.01"))
#: busy day: users.update_all does more per user and outlasts its period
DEMO_BUSY_DAY = os.environ.get("CCS_DEMO_BUSY_DAY", "0").lower() in ("1", "true", "yes")
#: seconds of work per user on a normal and on a busy day
DEMO_USER_COST = 0.0015 if DEMO_BUSY_DAY else 0.0002
#: the start and end of every task body, one JSON object a line
DEMO_RUNS_FILE = RUN_DIR / "runs.jsonl"
#: every ccs_beat decision (beat's and the guard's), one JSON object a line
CELERY_CCS_BEAT_EVENT_LOG = str(RUN_DIR / "decisions.jsonl")

# -- Celery (read by example_project.celery with namespace="CELERY") ---------------

CELERY_BROKER_URL = os.environ.get("CCS_DEMO_BROKER") or "filesystem://"
_queue = os.environ.get("CCS_DEMO_QUEUE") or "ccs-demo"
CELERY_TASK_DEFAULT_QUEUE = _queue
CELERY_CONTROL_EXCHANGE = f"ctl-{_queue}"      # broadcasts (beat's cluster read) stay in this run
CELERY_EVENT_EXCHANGE = f"ev-{_queue}"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1           # a worker holds no more than it can run
CELERY_TIMEZONE = TIME_ZONE
CELERY_RESULT_EXPIRES = None                    # no result backend: no backend_cleanup entry
CELERY_BEAT_SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"

if CELERY_BROKER_URL.startswith("filesystem"):
    _broker_dir = RUN_DIR / "broker"
    _folders = {name: _broker_dir / name for name in ("queue", "processed", "control")}
    for _folder in _folders.values():
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_folders["queue"]),
        "data_folder_out": str(_folders["queue"]),
        "processed_folder": str(_folders["processed"]),
        "control_folder": str(_folders["control"]),   # broadcasts: needed by ccs_beat
        "store_processed": False,
        "polling_interval": 0.05,
    }
    # The filesystem transport polls folders, so a broadcast takes longer to be
    # answered than on RabbitMQ or Redis: give the worker guard a longer reply
    # timeout T, and a settle delay D >= T + 2 * margin (docs/guard.md, Timing).
    CELERY_CCS_BEAT_GUARD_DELAY = 2.5
    CELERY_CCS_BEAT_GUARD_TIMEOUT = 1.5
    CELERY_CCS_BEAT_GUARD_MARGIN = 0.5
