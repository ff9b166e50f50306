"""Django settings for ccs_beat's Django tests and the processes they start.

The database comes from ``CCS_TEST_DJANGO_DB``: unset or ``sqlite`` -> an
SQLite file (``CCS_TEST_DJANGO_SQLITE``, default in memory for the test
client); ``postgres:<name>`` -> that database on the loopback PostgreSQL.
"""

from __future__ import annotations

import os

SECRET_KEY = "ccs-beat-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.dj.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "ccs_beat.contrib.django",
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

_db = os.environ.get("CCS_TEST_DJANGO_DB", "sqlite")
if _db.startswith("postgres"):
    _name = _db.partition(":")[2] or "test"
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": _name,
        "USER": os.environ.get("CCS_TEST_PG_USER", "postgres"),
        "HOST": "127.0.0.1", "PORT": "5432",
        "TEST": {"NAME": os.environ.get("CCS_TEST_PG_TESTDB", f"test_ccs_{os.getpid()}")},
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CCS_TEST_DJANGO_SQLITE", ":memory:"),
    }}

CELERY_BEAT_SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"
