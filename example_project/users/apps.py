"""The ``users`` app: ``DemoUser`` and the ``users.update_all`` task."""

from __future__ import annotations

from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "example_project.users"
    label = "users"
    verbose_name = "Users"
