"""Fixtures shared by the Django tests: a Celery app for in-process schedulers,
periodic tasks and staff users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.contrib.auth.models import Permission
from django_celery_beat.models import IntervalSchedule, PeriodicTask


@pytest.fixture
def interval(db: None) -> IntervalSchedule:
    return IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)


@pytest.fixture
def make_task(interval: IntervalSchedule) -> Callable[..., PeriodicTask]:
    def make(name: str, **kwargs: Any) -> PeriodicTask:
        kwargs.setdefault("task", "tests.dj.noop")
        return PeriodicTask.objects.create(name=name, interval=interval, **kwargs)
    return make


@pytest.fixture
def task(make_task: Callable[..., PeriodicTask]) -> PeriodicTask:
    return make_task("nightly report", kwargs='{"region": "eu"}')


@pytest.fixture
def staff_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str, *codenames: str) -> Any:
        user = django_user_model.objects.create_user(username=username, password="pw",
                                                     is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(
            content_type__app_label="django_celery_beat", codename__in=codenames))
        return django_user_model.objects.get(pk=user.pk)  # no stale permission cache
    return make


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Celery]:
    """A Celery app on the filesystem transport, for schedulers built in the test."""
    folder = tmp_path / "broker"
    folder.mkdir()
    app = Celery("ccs_dj_test", broker="filesystem://", set_as_current=False)
    app.conf.broker_transport_options = {"data_folder_in": str(folder),
                                         "data_folder_out": str(folder),
                                         "control_folder": str(folder)}
    app.conf.beat_schedule = {}
    app.conf.result_expires = None
    yield app
    app.close()
