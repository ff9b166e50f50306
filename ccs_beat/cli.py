"""``celery ccs``: ccs_beat's sub-commands of the Celery CLI.

Celery imports this module (through the ``celery.commands`` entry point) every
time the ``celery`` program starts, which is also what makes workers started
with ``celery worker`` serve ccs_beat's cluster read without any change to the
user's code. Keep the import cheap and free of side effects beyond that.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import click
from celery.bin.base import CeleryCommand

from .errors import ConfigurationError
from .policies import EntryPolicies
from .policy import Policy, Settings


def _positive_seconds(ctx: click.Context, param: click.Parameter,
                      value: float | None) -> float | None:
    """A finite number of seconds in (0, 60], checked before anything is sent."""
    if value is not None and not (math.isfinite(value) and 0 < value <= 60):
        raise click.BadParameter(f"{value!r} is not a number of seconds in (0, 60]")
    return value


@click.group(name="ccs")
def ccs() -> None:
    """ccs_beat: singleton periodic tasks."""


@ccs.command(cls=CeleryCommand)
@click.option("--scheduler", default=None,
              help="The beat's scheduler, as given to beat -S, whose stored entries "
                   "(Django rows, redbeat entries) to check too (default: the "
                   "beat_scheduler setting).")
@click.pass_context
def check(ctx: click.Context, scheduler: str | None) -> None:
    """Validate ccs_beat settings, every beat_schedule entry's singleton option, and
    the entries the scheduler stores (django-celery-beat rows, redbeat entries)."""
    from .checks import check_app
    from .logs import printable

    app = ctx.obj.app
    app.loader.import_default_modules()   # Django is set up; tasks declare policies
    report = check_app(app, scheduler)
    # entry names come from rows and Redis: one line each, whatever they hold
    for name, policy in sorted(report.policies.items()):
        described = policy.describe() if policy.checked else "not checked (allow)"
        click.echo(printable(f"{name}: {described}"))
    for problem in report.problems:   # names in it are repr()s; its own lines stay
        click.echo("\n".join(printable(line) for line in problem.splitlines()), err=True)
    if report.problems:
        sys.exit(1)


@ccs.command(cls=CeleryCommand)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--timeout", type=float, default=None, callback=_positive_seconds,
              help="Seconds to wait for worker replies, more than 0 and at most 60 "
                   "(default: ccs_beat_inspect_timeout).")
@click.option("--schedule", "schedule_path", default=None,
              help="SingletonScheduler's schedule file (beat -s; default celerybeat-schedule).")
@click.option("--scheduler", default=None,
              help="The beat's scheduler, as given to beat -S, to find its ledger "
                   "(default: the beat_scheduler setting).")
@click.pass_context
def status(ctx: click.Context, as_json: bool, timeout: float | None,
           schedule_path: str | None, scheduler: str | None) -> None:
    """Singleton tasks running, reserved or scheduled now; the beat's ledger; silent workers.

    Uses beat's own cluster read: one broadcast.
    """
    from .cluster import ClusterReader
    from .policy import load_settings
    from .status import build_report, read_ledger, render, render_json

    app = ctx.obj.app
    app.loader.import_default_modules()   # autodiscovered tasks declare their policies
    try:
        settings = load_settings(app.conf)
    except ConfigurationError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    policies, task_policies = _singleton_policies(app, settings)
    ledger, source, error = read_ledger(app, schedule_path, scheduler)
    reader = ClusterReader.for_settings(app, settings, timeout=timeout or None)
    try:
        snapshot = reader.read(None, ids=ledger.unseen() if ledger is not None else None)
    finally:
        reader.close()
    report = build_report(snapshot, policies, task_policies, ledger, source, error)
    click.echo(render_json(report) if as_json else render(report))
    sys.exit(report.exit_code)



def _singleton_policies(app: Any, settings: Settings,
                        ) -> tuple[dict[str, tuple[str, Policy]], dict[str, Policy]]:
    """Which task names are singletons: by a ``beat_schedule`` entry (task ->
    (entry, policy)), and by a task's own declaration (task -> policy). A bad
    one is named on stderr and left out: the status still shows."""
    entries = EntryPolicies(app, settings)
    policies: dict[str, tuple[str, Policy]] = {}
    for name, spec in sorted((app.conf.beat_schedule or {}).items()):
        try:
            policy = entries.policy_for(name, spec.get("options"), spec.get("task"))
        except ConfigurationError as exc:
            click.echo(f"warning: {exc}", err=True)
            continue
        if policy.checked and spec.get("task"):
            policies.setdefault(spec["task"], (name, policy))
    task_policies: dict[str, Policy] = {}
    for name, task in list(app.tasks.items()):
        getter = getattr(task, "ccs_policy", None)
        if getter is not None:
            try:
                policy = getter()
            except ConfigurationError as exc:
                click.echo(f"warning: {exc}", err=True)
                continue
            if policy is not None:
                task_policies[name] = policy
    return policies, task_policies
