"""The project package is an installed app only to hold the ``setup_demo`` command."""

from __future__ import annotations

from django.apps import AppConfig


class ExampleProjectConfig(AppConfig):
    name = "example_project"
    verbose_name = "ccs_beat example project"
