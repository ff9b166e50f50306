"""One-command demo of ccs_beat: ``python -m example_project.demo`` from the repository root.

It creates a fresh run directory (SQLite database, bucket, broker folders,
logs), migrates and seeds it, starts two Celery workers and ``celery beat``
with ccs_beat's ``SingletonDatabaseScheduler`` on Celery's filesystem
transport (no server needed), and prints a timeline read from their logs for
about a minute: every emission and skip with its reason, every decision of the
worker guard, every task body's start and end per worker. Part way through it
plays an operator who calls ``users.update_all.delay()`` while a run is going,
and the guard turns that copy away. It ends with a summary whose overlap count
is *measured* from the recorded body intervals.

Options: ``--seconds N`` (default 60), ``--quick`` (22 s, for CI),
``--broker URL`` or ``CCS_DEMO_BROKER`` (RabbitMQ / Redis instead of folders),
``--json-summary PATH``, ``--run-dir DIR``. Exit status 0 when every task ran
and no two runs of a task overlapped, 1 otherwise, 2 when the cluster did not
start or one of its processes died, 130 when interrupted. Every process it
starts is stopped on exit and on Ctrl-C, with bounded waits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from example_project.timeline import HOST, TASKS, Event, Follower, Timeline, short

REPO = Path(__file__).resolve().parents[1]
SCHEDULER = "ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler"
WORKERS = ("w1", "w2")
#: periods of the two periodic tasks ("nightly" and "daily", compressed)
GC_EVERY, USERS_EVERY = 3, 4
#: seconds a timeline line is held back, so lines read from different logs print in order
HOLD = 0.6
#: environment variables that would steer the child processes away from this run
FOREIGN_ENV = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_CONFIG_MODULE")


class StartupError(RuntimeError):
    """The cluster did not come up; the message says which process and why."""


@dataclass
class Proc:
    """A process the demo started, in its own process group, logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2500) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m example_project.demo",
        description="ccs_beat live demo: Django + django-celery-beat + two workers.")
    parser.add_argument("--seconds", type=float, default=None,
                        help="how long beat runs (default 60, or 22 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a shorter run for CI: 22 s of beat, 12 s to drain at most")
    parser.add_argument("--broker", default=None,
                        help="broker URL (default: $CCS_DEMO_BROKER, else filesystem://)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="an empty or new directory for this run (default: a temp dir)")
    parser.add_argument("--json-summary", type=Path, default=None,
                        help="also write the summary as JSON to this file")
    parser.add_argument("--run-now-at", type=float, default=None,
                        help="seconds after beat starts from which the operator sends the "
                             "manual duplicate (default: a third of the run)")
    parser.add_argument("--calm-day", action="store_true",
                        help="users.update_all at its normal speed (shorter than its period)")
    parser.add_argument("--users", type=int, default=3000, help="users to generate")
    parser.add_argument("--blobs", type=int, default=500, help="objects to put in the bucket")
    parser.add_argument("--concurrency", type=int, default=3,
                        help="pool processes per worker (default 3)")
    args = parser.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.concurrency < 1 or args.users < 1 or args.blobs < 0:
        parser.error("--concurrency and --users must be at least 1, --blobs at least 0")
    if args.seconds is None:
        args.seconds = 22.0 if args.quick else 60.0
    if args.run_now_at is None:
        args.run_now_at = 5.0 if args.quick else args.seconds / 3
    args.drain = 12.0 if args.quick else 20.0
    args.broker = args.broker or os.environ.get("CCS_DEMO_BROKER") or "filesystem://"
    return args


class Demo:
    """One run: set up, start, watch, stop, summarize. See the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = self._run_dir(args.run_dir)
        self.queue = f"ccs-demo-{uuid.uuid4().hex[:8]}"
        self.procs: list[Proc] = []
        self.timeline = Timeline()
        self.followers: list[tuple[Follower, str]] = []
        self.runs_follower = Follower(self.run_dir / "runs.jsonl")
        self.decisions_follower = Follower(self.run_dir / "decisions.jsonl")
        self.pending: list[Event] = []
        self.t0 = time.time()
        self.manual_id: str | None = None
        self.manual_winner: str | None = None
        self.problems: list[str] = []
        self.app: Any = None
        self.ccs_settings: Any = None            # ccs_beat's settings, as the workers load them
        self.ended_at: float | None = None

    # -- environment ---------------------------------------------------------------

    @staticmethod
    def _run_dir(requested: Path | None) -> Path:
        if requested is None:
            return Path(tempfile.mkdtemp(prefix="ccs-demo-")).resolve()
        requested = requested.resolve()
        if requested.exists() and any(requested.iterdir()):
            raise SystemExit(f"--run-dir {requested} is not empty: the demo needs a fresh one")
        requested.mkdir(parents=True, exist_ok=True)
        return requested

    def env(self) -> dict[str, str]:
        """What every process of this run (this one included) must agree on."""
        return {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "CCS_DEMO_DIR": str(self.run_dir),
            "CCS_DEMO_BROKER": self.args.broker,
            "CCS_DEMO_QUEUE": self.queue,
            "CCS_DEMO_BUSY_DAY": "0" if self.args.calm_day else "1",
        }

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(self.env())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- output --------------------------------------------------------------------

    @staticmethod
    def say(text: str = "") -> None:
        print(text, flush=True)

    def header(self) -> None:
        """What runs, and how to read the timeline: for someone who has never
        seen ccs_beat."""
        args, ccs = self.args, self.ccs_settings
        broker = _redact(args.broker)
        where = ("folders under the run dir; --broker URL for RabbitMQ or Redis"
                 if args.broker.startswith("filesystem") else f"queue {self.queue}")
        users_cost = ("1.5 ms of work per user: a busy day" if not args.calm_day
                      else "0.2 ms of work per user")
        lines = [
            "ccs_beat demo: beat emits a periodic task only when no identical task is queued "
            "or running",
            f"  run dir   {self.run_dir}",
            "            beat.log, w1.log, w2.log; runs.jsonl (each body's start and end); "
            "db.sqlite3",
            f"  broker    {broker} ({where})",
            f"  beat      celery beat -S {SCHEDULER}",
            f"  workers   w1 and w2, {args.concurrency} prefork processes each; both tasks are "
            "ccs_beat.SingletonTask",
            "  schedule  two django-celery-beat periodic tasks, singleton switched on in the "
            "database:",
            f"            'nightly blob GC'    blobs.collect_garbage  every {GC_EVERY}s: "
            f"a HEAD per object, {args.blobs} objects",
            f"            'daily user update'  users.update_all       every {USERS_EVERY}s: "
            f"{args.users} users, {users_cost}",
            ("  Both take" if not args.calm_day else "  The GC takes")
            + " longer than the period: plain beat would start a second copy while one still "
            "runs.",
            "",
            "How to read it (t+ = seconds since beat started; task ids cut to 8 characters):",
            "  EMIT     beat sent the task: no identical task was queued or running",
            "  skip     beat did not send it, and names the identical task still queued or "
            "running",
            f"  guard    a worker's guard waits {ccs.guard_delay:g}s, asks the cluster once "
            f"(replies within {ccs.guard_timeout:g}s; a worker",
            "           process's first ask waits all of it) and lets the body run",
            "  start    a task body starts on that worker; end: it ends (the task records both)",
            f"  run-now  from t+{args.run_now_at:.0f}s, an operator calls users.update_all.delay()"
            " while a run is going:",
            "           beat cannot see or stop that copy",
            "  GUARD    the guard turned a duplicate away: it ends without running its body",
            f"Beat runs for {args.seconds:g}s, then stops; the workers finish what they are "
            "running. Ctrl-C stops at once.",
            "",
        ]
        for line in lines:
            self.say(line)

    def emit(self, event: Event | None) -> None:
        if event is not None:
            self.pending.append(event)

    def flush(self, hold: float = HOLD) -> None:
        """Print the lines older than ``hold`` seconds, in time order."""
        cutoff = time.time() - hold
        ready = sorted((e for e in self.pending if e.t <= cutoff), key=lambda e: e.t)
        self.pending = [e for e in self.pending if e.t > cutoff]
        for event in ready:
            self.say(event.format(self.t0))

    # -- setup ---------------------------------------------------------------------

    def configure(self) -> None:
        """Load Django and the Celery app in this process, with this run's settings."""
        os.environ.update(self.env())
        for name in FOREIGN_ENV:
            os.environ.pop(name, None)
        import django

        django.setup()
        from ccs_beat.policy import load_settings
        from example_project.celery import app

        self.app = app
        self.ccs_settings = load_settings(app.conf)

    def setup(self) -> None:
        """Migrate and seed the fresh database, in this process."""
        from django.core.management import call_command
        from django.db import connections

        started = time.monotonic()
        call_command("migrate", verbosity=0, interactive=False)
        out = io.StringIO()
        call_command("setup_demo", users=self.args.users, blobs=self.args.blobs,
                     gc_every=GC_EVERY, users_every=USERS_EVERY, stdout=out)
        connections.close_all()     # the workers and beat write to it from now on
        for line in out.getvalue().splitlines():
            self.say(f"setup: {line}")
        self.say(f"setup: database migrated and seeded in {time.monotonic() - started:.1f}s")

    def spawn(self, name: str, args: list[str]) -> Proc:
        log = self.run_dir / f"{name}.log"
        with open(log, "ab") as fh:
            popen = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "example_project", *args],
                cwd=self.run_dir, env=self.child_env(), stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        # for whoever must clean up if this process itself is killed: one process
        # group per line (a test harness does, after a timeout)
        with open(self.run_dir / "process-groups", "a", encoding="utf-8") as fh:
            fh.write(f"{popen.pid} {name}\n")
        self.followers.append((Follower(log), name))
        return proc

    def start_workers(self, timeout: float = 60.0) -> None:
        """Start the workers one after the other, each once the previous one answers.

        One at a time because kombu's filesystem transport creates an exchange's
        binding file with ``open("wb")`` before locking it: two workers starting
        together can each write their own binding to the control exchange, and
        the one that loses never receives a broadcast (no ping, no cluster read).
        """
        started = time.monotonic()
        for name in WORKERS:
            proc = self.spawn(name, ["worker", "-n", f"{name}@{HOST}",
                                     "-c", str(self.args.concurrency), "-P", "prefork",
                                     "-l", "info", "--without-mingle"])
            self._await_ping(proc, f"{name}@{HOST}", timeout)
        self.say(f"setup: workers w1 and w2 answer (started in {time.monotonic() - started:.1f}s)")

    def _await_ping(self, proc: Proc, hostname: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive():
                raise StartupError(f"worker {proc.name} exited at start:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise StartupError(f"worker {proc.name} did not answer a ping within "
                                   f"{timeout:g}s:\n{proc.tail()}")
            try:
                replies = self.app.control.ping(destination=[hostname], timeout=0.5) or []
            except ValueError:
                # the filesystem transport can read a reply file before it is filled
                continue
            if any(hostname in reply for reply in replies):
                return

    def start_beat(self) -> Proc:
        self.t0 = time.time()
        return self.spawn("beat", ["beat", "-S", SCHEDULER, "-l", "info", "--max-interval", "1",
                                   "--pidfile", str(self.run_dir / "beat.pid"),
                                   "-s", str(self.run_dir / "celerybeat-schedule")])

    # -- watching ------------------------------------------------------------------

    def poll(self) -> None:
        """Read what the processes wrote since the last poll."""
        for follower, who in self.followers:
            for line in follower.lines():
                event = self.timeline.add_log_line(line, who)
                if (event is not None and event.what == "error"
                        and self.timeline.stopped_by_us(event.t)):
                    self.timeline.events.remove(event)   # a pool process we stopped
                    continue
                self.emit(event)
        for line in self.decisions_follower.lines():
            self.emit(self.timeline.add_decision(line))
        for line in self.runs_follower.lines():
            self.emit(self.timeline.add_run_record(line))

    def maybe_run_now(self) -> None:
        """Play the operator: once, a ``users.update_all.delay()`` right after a
        run of it started, so the copy reaches a worker while that run is going."""
        if self.manual_id is not None:
            return
        now = time.time()
        if now < self.t0 + self.args.run_now_at:
            return
        going = [r for r in self.timeline.runs.values()
                 if r.task == "users.update_all" and r.end is None
                 and r.start >= self.t0 + self.args.run_now_at - 1.0 and now - r.start < 1.5]
        if not going:
            return
        from example_project.users.tasks import update_all

        result = update_all.delay()
        self.manual_id = result.id
        self.manual_winner = going[0].task_id
        self.timeline.manual_ids.add(result.id)
        event = Event(time.time(), "operator", "run-now", "users.update_all",
                      f"{short(result.id)} sent with .delay() while "
                      f"{short(going[0].task_id)} runs on {going[0].worker}", result.id)
        self.timeline.add(event)
        self.emit(event)

    def watch(self, until: float, *, operator: bool,
              stop_when: Callable[[], bool] | None = None) -> None:
        """Follow the logs until ``until`` (wall clock) or ``stop_when()`` is true."""
        while time.time() < until:
            self.poll()
            if operator:
                self.maybe_run_now()
            self.flush()
            if operator:
                for proc in self.procs:
                    if not proc.alive():
                        raise StartupError(f"{proc.name} exited during the run:\n{proc.tail()}")
            if stop_when is not None and stop_when():
                return
            time.sleep(0.2)

    # -- stopping ------------------------------------------------------------------

    def stop_gracefully(self) -> None:
        """Stop beat, then let the workers finish their bodies (warm shutdown),
        within ``--drain`` seconds; kill whatever is left."""
        beat = next(p for p in self.procs if p.name == "beat")
        self.timeline.stopping_at = time.time()
        self.emit(Event(time.time(), "demo", "stop", "",
                        f"{self.args.seconds:g}s are up: beat stops; the workers finish what "
                        "they are running and exit"))
        _signal_leader(beat, signal.SIGTERM)
        _wait(beat, 5.0)
        workers = [p for p in self.procs if p.name in WORKERS]
        for proc in workers:
            _signal_leader(proc, signal.SIGTERM)     # warm shutdown: the leader only
        # An idle worker on the filesystem transport takes seconds to exit after a
        # warm shutdown; what matters is that no task it received is still going.
        deadline = time.time() + self.args.drain
        self.watch(deadline, operator=False,
                   stop_when=lambda: (not self.timeline.in_flight
                                      or not any(p.alive() for p in workers)))
        if self.timeline.in_flight:
            self.problems.append(
                f"tasks still going after {self.args.drain:g}s of warm shutdown, killed: "
                + ", ".join(short(i) for i in sorted(self.timeline.in_flight)))
        self.kill_all(grace=1.0)
        self.ended_at = time.time()
        self.poll()
        self.flush(hold=0.0)

    def kill_all(self, grace: float = 3.0) -> None:
        """Stop every process group this demo started; bounded: ``grace`` seconds
        after SIGTERM, then SIGKILL."""
        for proc in self.procs:
            if proc.alive():
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            _signal_group(proc, signal.SIGKILL)     # also pool processes left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)
        deadline = time.monotonic() + 5.0     # orphaned pool processes: until reaped
        while any(_group_alive(p) for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup_broker(self) -> None:
        """Delete this run's queue on a real broker (best effort)."""
        if self.app is None or self.args.broker.startswith("filesystem"):
            return
        from kombu import Exchange, Queue

        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                # declared first, so that the channel knows the binding it removes
                queue = Queue(self.queue, Exchange(self.queue, type="direct"),
                              routing_key=self.queue, channel=conn.default_channel)
                queue.declare()
                queue.delete()
        except Exception as exc:  # noqa: BLE001 - leftovers are harmless, say so and go on
            self.say(f"note: could not delete queue {self.queue}: {exc!r}")

    # -- summary -------------------------------------------------------------------

    def summary(self, interrupted: bool = False) -> dict[str, Any]:
        now = self.ended_at or time.time()
        data = self.timeline.summary(now, manual_id=self.manual_id)
        tasks = data["tasks"]
        for name, row in tasks.items():
            if row["runs"] == 0 and not interrupted:
                self.problems.append(f"{name} never ran")
            if row["overlaps"]:
                self.problems.append(f"{name}: {row['overlaps']} overlapping pair(s) of runs: "
                                     f"{row['overlapping']}")
            if row["failed"]:
                self.problems.append(f"{name}: {row['failed']} run(s) failed")
        if interrupted:
            self.problems.append("interrupted")
        data.update({
            "seconds": self.args.seconds, "broker": _redact(self.args.broker),
            "run_dir": str(self.run_dir), "queue": self.queue, "busy_day": not self.args.calm_day,
            "wall_seconds": round(now - self.t0, 1), "interrupted": interrupted,
            "problems": list(dict.fromkeys(self.problems)),
            "ok": not self.problems,
        })
        data["manual_duplicate"]["winner"] = self.manual_winner
        return data

    def print_summary(self, data: dict[str, Any]) -> None:
        say = self.say
        say()
        ends = [r.end for r in self.timeline.runs.values() if r.end is not None]
        last = f"the last body ended at t+{max(ends) - self.t0:.1f}s" if ends else "no body ended"
        ran = (f"interrupted at t+{data['wall_seconds']:.1f}s" if data["interrupted"]
               else f"beat ran for {data['seconds']:g}s")
        say(f"Summary: {ran}; {last}")
        say(f"  {'task':<22} {'due':>4} {'emitted':>8} {'skipped':>8} {'bodies':>7} "
            f"{'guard skips':>12} {'overlaps':>9} {'longest':>8}")
        skipped = 0
        for name in TASKS:
            row = data["tasks"][name]
            skipped += row["beat_skips"]
            longest = f"{row['longest_run']:.1f}s" if row["longest_run"] is not None else "-"
            say(f"  {name:<22} {row['emitted'] + row['beat_skips']:>4} {row['emitted']:>8} "
                f"{row['beat_skips']:>8} {row['runs']:>7} {row['guard_skips']:>12} "
                f"{row['overlaps']:>9} {longest:>8}")
        per_worker = ", ".join(f"{w} {n}" for w, n in data["runs_per_worker"].items()) or "none"
        say(f"  bodies per worker: {per_worker}")
        manual = data["manual_duplicate"]
        outcome = {
            "guard_skipped": lambda m: f"turned away by the guard on {m['worker']}: "
                                       f"{m['reason']}",
            "ran": lambda m: f"ran on {m['worker']} (no run of it was going when it checked)",
            "expired": lambda m: "expired before a worker picked it up",
            "not_seen": lambda m: "sent, but no worker had decided on it when the demo stopped",
            "not_sent": lambda m: "not sent (no run of users.update_all started in time)",
        }[manual["outcome"]](manual)
        name = short(manual["id"]) if manual["id"] else "-"
        say(f"  operator's duplicate {name}: {outcome}")
        say(f"  beat skipped {skipped} due runs: plain beat would have sent each of them while "
            "the previous copy was still queued or running.")
        for error in data["errors"][:5]:
            say(f"  error logged: {error}")
        if data["ok"]:
            say("  OK: both tasks ran, and no two runs of the same task overlapped "
                "(measured from runs.jsonl).")
        else:
            for problem in data["problems"]:
                say(f"  PROBLEM: {problem}")
        say(f"  Logs and data: {self.run_dir}. Browse it in the admin: "
            f"CCS_DEMO_DIR={self.run_dir} python example_project/manage.py runserver")

    # -- the whole run -------------------------------------------------------------

    def run(self) -> int:
        interrupted = False
        code = 0
        try:
            try:
                self.configure()
                self.header()
                self.setup()
                self.start_workers()
                self.start_beat()
                self.say()
                self.say(f"   {'time':<7}  {'who':<8} {'what':<7} {'task':<22} details")
                self.watch(self.t0 + self.args.seconds, operator=True)
                self.stop_gracefully()
            except StartupError as exc:
                self.problems.append(str(exc).splitlines()[0])
                self.flush(hold=0.0)
                self.say(f"\nPROBLEM: {exc}")
                code = 2
            except KeyboardInterrupt:
                interrupted = True
                self.timeline.stopping_at = self.timeline.stopping_at or time.time()
                signal.signal(signal.SIGINT, signal.SIG_IGN)     # cleanup is bounded anyway
                self.say("\ninterrupted: stopping beat and the workers")
            finally:
                self.timeline.stopping_at = self.timeline.stopping_at or time.time()
                self.kill_all(grace=1.0)
                self.ended_at = self.ended_at or time.time()
            self.poll()
            self.flush(hold=0.0)
            data = self.summary(interrupted=interrupted)
            self.print_summary(data)
            if self.args.json_summary is not None:
                self.args.json_summary.write_text(json.dumps(data, indent=2) + "\n",
                                                  encoding="utf-8")
            if interrupted:
                return 130
            return code or (0 if data["ok"] else 1)
        finally:
            self.kill_all(grace=0.0)
            self.cleanup_broker()


def _signal_leader(proc: Proc, sig: int) -> None:
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(sig)


def _signal_group(proc: Proc, sig: int) -> None:
    # the group's id is the leader's pid (start_new_session); it cannot be reused
    # while any member is alive, and an empty group raises ProcessLookupError
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.popen.pid, sig)


def _group_alive(proc: Proc) -> bool:
    try:
        os.killpg(proc.popen.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait(proc: Proc, timeout: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=timeout)


def _redact(url: str) -> str:
    """The broker URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit status says whether its summary is sane."""
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)      # same clean stop as Ctrl-C
    return Demo(args).run()


if __name__ == "__main__":
    sys.exit(main())
