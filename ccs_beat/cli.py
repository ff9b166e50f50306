"""``celery ccs``: ccs_beat's sub-commands of the Celery CLI.

Celery imports this module (through the ``celery.commands`` entry point) every
time the ``celery`` program starts, which is also what makes workers started
with ``celery worker`` serve ccs_beat's cluster read without any change to the
user's code. Keep the import cheap and free of side effects beyond that.
"""

from __future__ import annotations

import sys

import click
from celery.bin.base import CeleryCommand

from .coordinator import Coordinator
from .errors import ConfigurationError
from .ledger import Ledger


@click.group(name="ccs")
def ccs() -> None:
    """ccs_beat: singleton periodic tasks."""


@ccs.command(cls=CeleryCommand)
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate ccs_beat settings and every beat_schedule entry's singleton option."""
    app = ctx.obj.app
    try:
        coordinator = Coordinator(app, sender=None, ledger=Ledger())
        entries = {name: _Entry(name, spec) for name, spec in
                   (app.conf.beat_schedule or {}).items()}
        policies = coordinator.validate(entries)
    except ConfigurationError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for name, policy in sorted(policies.items()):
        click.echo(f"{name}: {policy.describe() if policy.checked else 'not checked (allow)'}")


class _Entry:
    """The few attributes of a beat_schedule dict that validation reads."""

    def __init__(self, name: str, spec: dict) -> None:
        self.name = name
        self.task = spec.get("task")
        self.args = spec.get("args") or ()
        self.kwargs = spec.get("kwargs") or {}
        self.options = spec.get("options") or {}
