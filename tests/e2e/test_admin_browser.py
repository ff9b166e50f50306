"""End to end: an operator makes a periodic task singleton in the Django admin,
and the beat that is already running stops overlapping it.

Real processes everywhere: a PostgreSQL database, a Celery worker and
``celery beat -S ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler``
on RabbitMQ, Django's development server, and Chromium driven by Playwright.

The app default is ``allow``, so a periodic task without singleton settings
overlaps (a 3 s task every second). The test waits to see that, ticks
"Singleton" on the task's change page, saves, and then checks -- without
restarting beat -- that no run beat sent with the singleton check started while
another run was going, that runs went on, and that beat logged skips.

``CCS_SCREENSHOTS=1`` also writes the change page to ``docs/img/admin-singleton.png``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import in_ci, require_broker
from tests.dj.pg import django_env, fresh_database, migrate, require_postgres
from tests.integration.harness import REPO, Cluster, Proc, Run, wait_until

pytestmark = pytest.mark.timeout(180)

TASK_NAME = "long-sleep"
TAG = "e2e"
SLEEP = 3                   # seconds each run takes; beat emits it every second
GRACE = SLEEP + 1.0         # everything running or about to start at the save has ended
USER, PASSWORD = "admin", "e2e-password"
SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"
SCREENSHOT = REPO / "docs" / "img" / "admin-singleton.png"
CHROMIUM = os.environ.get("CCS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

SETUP = f"""
import json
from django.contrib.auth.models import User
from django_celery_beat.models import IntervalSchedule, PeriodicTask
User.objects.create_superuser({USER!r}, "admin@example.com", {PASSWORD!r})
every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
task = PeriodicTask.objects.create(
    name={TASK_NAME!r}, task="tests.sleep", interval=every,
    args=json.dumps([{SLEEP!r}]), kwargs=json.dumps({{"tag": {TAG!r}}}))
print("PK=%d" % task.pk)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def django_setup(env: dict[str, str]) -> int:
    """Create the superuser and the periodic task (no singleton row); return its pk."""
    proc = subprocess.run([sys.executable, "-m", "django", "shell", "-v", "0", "-c", SETUP],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pks = [line[3:] for line in proc.stdout.splitlines() if line.startswith("PK=")]
    assert pks, proc.stdout + proc.stderr
    return int(pks[-1])


# The web process imports the Celery app of beat and the worker at startup, as a
# project's ``proj/__init__.py`` does, so that the admin sees ``ccs_beat_default_policy``
# (Celery's Django fix-up makes it the default app, also in runserver's threads).
WEB = """
import sys
import tests.dj.celeryapp
from django.core.management import execute_from_command_line
execute_from_command_line(["django-admin", "runserver", *sys.argv[1:]])
"""


def start_web(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """Django's development server (``--insecure``: serve the admin's CSS with DEBUG off)."""
    port = free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", WEB, f"127.0.0.1:{port}", "--noreload", "--insecure"],
            env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"runserver exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/admin/login/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_until(answers, 30, interval=0.2, what="the Django development server")
    except BaseException:
        stop_process(proc)
        raise
    return proc, base


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def screenshot_singleton_part(page, path: Path) -> None:
    """The change page from "Singleton: last decision" to the end of the inline."""
    top = page.locator("fieldset", has=page.locator(".field-singleton_last_decision"))
    first, last = top.bounding_box(), page.locator("#singleton-group").bounding_box()
    assert first and last, "the singleton parts of the change page are not visible"
    x, y = first["x"] - 12, first["y"] - 12
    page.screenshot(path=str(path), clip={
        "x": x, "y": y, "width": first["width"] + 24,
        "height": last["y"] + last["height"] + 12 - y})


def overlapping(runs: list[Run], now: float) -> tuple[Run, Run] | None:
    """Two runs that were running at the same time, if any."""
    for a, b in itertools.combinations(sorted(runs, key=lambda r: r.start), 2):
        if b.start < (a.end if a.end is not None else now):
            return a, b
    return None


def describe(runs: list[Run], since: float, marked: set[str] | None = None) -> str:
    marked = marked or set()
    return "\n".join(f"  {'*' if r.id in marked else ' '}{r.id} [{r.start - since:+.2f}, "
                     f"{'running' if r.end is None else f'{r.end - since:+.2f}'}]"
                     for r in runs)


def check_runs_after_toggle(runs: list[Run], beat: Proc, toggled: float) -> None:
    """Once beat has picked the setting up, no run starts while another runs.

    Beat reports every emission as a decision event; those it decided with the
    singleton check carry the entry's key (with the app default ``allow``,
    none did before the save). So the runs it sent with the check are known by
    id, and none of them may
    have started while any other run of the task -- checked or sent before the
    save -- was running: no grace period in which a second run could hide. Runs
    went on (two or more started after everything in flight at the save had
    ended, all of them sent with the check), and beat logged skips."""
    now = time.time()
    beat_log = beat.text()
    checked = {e.task_id for e in beat.emitted(TASK_NAME) if e.key is not None}
    after = [r for r in runs if r.start > toggled + GRACE]
    detail = (f"runs, seconds from the toggle (* sent with the check):\n"
              f"{describe(runs, toggled, checked)}\nbeat log:\n{beat_log[-3000:]}")
    assert len(after) >= 2, f"beat stopped running {TASK_NAME!r}\n{detail}"
    unchecked = [r.id for r in after if r.id not in checked]
    assert not unchecked, f"beat still sends {TASK_NAME!r} unchecked: {unchecked}\n{detail}"
    for run in (r for r in runs if r.id in checked):
        busy = [r.id for r in runs if r.id != run.id and r.start <= run.start
                and (r.end if r.end is not None else now) > run.start]
        assert not busy, f"{run.id} started while {busy} ran\n{detail}"
    assert beat.skipped(TASK_NAME), detail


def require_chromium() -> None:
    """Debian's Chromium, which Playwright drives (it cannot download its own
    here): skipped on a laptop without it, a failure under CI=true."""
    if os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return
    message = f"no Chromium at {CHROMIUM} (set CCS_TEST_CHROMIUM, or apt-get install chromium)"
    if in_ci():
        pytest.fail(f"{message}, and CI=true: the browser test must run")
    pytest.skip(message)


def test_admin_toggle_makes_running_beat_skip_overlaps(tmp_path: Path) -> None:
    require_postgres()
    broker_url = require_broker("amqp")
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with fresh_database("ccs_e2e") as db:
        denv = django_env(f"postgres:{db}")
        base_env = {**os.environ, **denv, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        migrate(base_env, str(REPO))
        pk = django_setup(base_env)

        cluster = Cluster(broker_url, tmp_path, app_module="tests.dj.celeryapp",
                          settings={"ccs_beat_default_policy": "allow"}, extra_env=denv)
        web = None
        try:
            cluster.start_worker("w1", concurrency=4)
            beat = cluster.start_beat(scheduler=SCHEDULER)
            web, base = start_web(cluster.env(), tmp_path / "runserver.log")

            # 1. not set + app default "allow": beat overlaps the task
            wait_until(lambda: overlapping(cluster.runs(TAG), time.time()), 30,
                       what="two overlapping runs before the toggle")
            assert not beat.skipped(TASK_NAME), beat.text()[-3000:]
            # every emission so far was plain beat: no key, overlap allowed
            assert all(e.key is None and e.reason == "overlap_allowed"
                       for e in beat.emitted(TASK_NAME)), beat.text()[-3000:]

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1100, "height": 2400})
                    page.set_default_timeout(15_000)

                    # 2. the operator ticks "Singleton" and saves
                    page.goto(base + "/admin/login/?next=/admin/")
                    page.fill("#id_username", USER)
                    page.fill("#id_password", PASSWORD)
                    page.click("input[type=submit]")
                    expect(page.locator("#user-tools")).to_contain_text(USER)

                    # not set: the change list and the inline show the app default, off
                    page.goto(base + "/admin/django_celery_beat/periodictask/")
                    row = page.locator("#result_list tbody tr", has_text=TASK_NAME)
                    expect(row.locator("td.field-singleton_state")).to_have_text(
                        "app default: off")

                    change_url = f"{base}/admin/django_celery_beat/periodictask/{pk}/change/"
                    page.goto(change_url)
                    inline = page.locator("#singleton-group")
                    box = inline.get_by_role("checkbox", name="Singleton")
                    expect(box).not_to_be_checked()
                    box.check()
                    page.click("input[name=_save]")
                    expect(page.locator("ul.messagelist .success")).to_contain_text(
                        "was changed successfully")
                    toggled = time.time()   # the admin's transaction has committed

                    state = row.locator("td.field-singleton_state").inner_text().strip()
                    assert state == "on (skip)", (
                        f"the singleton setting was not saved: the change list shows "
                        f"{state!r} for {TASK_NAME!r}")

                    # 3. beat, not restarted, stops overlapping and goes on running it
                    def settled() -> list[Run]:
                        return [r for r in cluster.finished_runs(TAG)
                                if r.start > toggled + GRACE]

                    wait_until(lambda: len(settled()) >= 2, 30, interval=0.2,
                               what="two runs after the toggle")
                    check_runs_after_toggle(cluster.runs(TAG), beat, toggled)

                    # the change page shows the saved inline and beat's last decision,
                    # a skip two times in three (reload until it is one, for the picture)
                    decision = page.locator(".field-singleton_last_decision")

                    def shows_a_skip() -> bool:
                        page.goto(change_url)
                        return "skipped" in decision.inner_text()

                    wait_until(shows_a_skip, 15, interval=0.3,
                               what="the change page to show a skipped decision")
                    expect(box).to_be_checked()
                    expect(decision).to_contain_text("blocked by task")
                    shot = tmp_path / "admin-singleton.png"
                    screenshot_singleton_part(page, shot)
                finally:
                    browser.close()
            assert beat.alive(), beat.text()[-3000:]

            if os.environ.get("CCS_SCREENSHOTS") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)
        finally:
            if web is not None:
                stop_process(web)
            cluster.close()
