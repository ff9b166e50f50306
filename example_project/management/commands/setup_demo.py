"""``manage.py setup_demo``: seed the data and put the two periodic tasks in the database.

The schedule lives where a Django shop keeps it: django-celery-beat's
``PeriodicTask`` rows, each with ccs_beat's ``SingletonSettings`` row (the
"Singleton" inline in the admin) switched on. "Nightly" and "daily" are
compressed to a few seconds so that, in a one-minute demo, each job is due
again while its previous run is still going: exactly when plain beat would
start a second copy, and ccs_beat does not.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ccs_beat.contrib.django.models import SingletonSettings

#: (periodic task name, task, what it stands for)
SCHEDULE = [
    ("nightly blob GC", "blobs.collect_garbage", "nightly at 03:00"),
    ("daily user update", "users.update_all", "daily at 04:00"),
]


def schedule_task(name: str, task: str, every: float, description: str) -> PeriodicTask:
    """Create or update one periodic task due every ``every`` seconds, singleton on."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=int(every), period=IntervalSchedule.SECONDS)
    periodic, _ = PeriodicTask.objects.update_or_create(
        name=name, defaults={"task": task, "interval": interval, "crontab": None,
                             "args": "[]", "kwargs": "{}", "enabled": True,
                             "description": description})
    SingletonSettings.objects.update_or_create(
        periodic_task=periodic, defaults={"enabled": True, "overlap": "skip"})
    return periodic


class Command(BaseCommand):
    help = ("Seed users and blobs, and schedule blobs.collect_garbage and users.update_all "
            "every few seconds with the singleton setting on.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--gc-every", type=int, default=3,
                            help="seconds between blob GC runs (stands for 'nightly')")
        parser.add_argument("--users-every", type=int, default=4,
                            help="seconds between user updates (stands for 'daily')")
        parser.add_argument("--users", type=int, default=3000, help="users to generate")
        parser.add_argument("--blobs", type=int, default=500, help="objects to put in the bucket")
        parser.add_argument("--no-seed", action="store_true",
                            help="only (re)create the periodic tasks")

    def handle(self, *args: Any, gc_every: int, users_every: int, users: int, blobs: int,
               no_seed: bool, **options: Any) -> None:
        if not no_seed:
            call_command("seed_users", count=users, stdout=self.stdout)
            call_command("seed_blobs", count=blobs, stdout=self.stdout)
        every = {"blobs.collect_garbage": gc_every, "users.update_all": users_every}
        with transaction.atomic():
            for name, task, stands_for in SCHEDULE:
                schedule_task(name, task, every[task],
                              f"{stands_for} in real life; every {every[task]}s in the demo")
        for name, task, _ in SCHEDULE:
            self.stdout.write(f"periodic task {name!r}: {task} every {every[task]}s, "
                              "singleton on (skip)")
