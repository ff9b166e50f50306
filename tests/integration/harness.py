"""Start and stop real ``celery worker`` / ``celery beat`` processes for a test.

Each :class:`Cluster` has its own queue, control and event exchanges and run
directory, so concurrent or leftover runs cannot interfere. Every wait is
bounded, and :meth:`Cluster.close` kills whatever is still running.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccs_beat.events import BeatAction, DecisionEvent
from ccs_beat.reporting import read_events

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    id: str
    tag: str
    start: float
    end: float | None
    worker: str | None
    stamp: dict | None = None
    expires: str | None = None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    #: the process's decision events (``ccs_beat_event_log``), one JSON line each
    event_log: Path | None = None

    def text(self) -> str:
        """The process's log, for failure messages: tests read decisions from
        :meth:`decisions`, never from log wording."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def decisions(self, entry: str | None = None) -> list[DecisionEvent]:
        """Every decision this process reported, oldest first (of ``entry``
        only, if given; a guard's carry no entry)."""
        if self.event_log is None:
            return []
        return [e for e in read_events(self.event_log) if entry is None or e.entry == entry]

    def emitted(self, entry: str | None = None) -> list[DecisionEvent]:
        return [e for e in self.decisions(entry) if e.action == BeatAction.EMIT]

    def skipped(self, entry: str | None = None) -> list[DecisionEvent]:
        return [e for e in self.decisions(entry) if e.action == BeatAction.SKIP]

    def alive(self) -> bool:
        return self.popen.poll() is None


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Cluster:
    def __init__(self, broker_url: str, tmp_path: Path, *, schedule: dict | None = None,
                 settings: dict | None = None, backend: str | None = None,
                 app_module: str = "tests.integration.proj",
                 extra_env: dict[str, str] | None = None) -> None:
        self.uid = uuid.uuid4().hex[:10]
        self.app_module = app_module
        self.extra_env = dict(extra_env or {})
        self.dir = tmp_path / f"cluster-{self.uid}"
        self.dir.mkdir(parents=True)
        self.broker_url = broker_url
        self.queue = f"ccs-test-{self.uid}"
        if broker_url.startswith("filesystem"):
            # kombu's filesystem transport creates an exchange's binding file with
            # open("wb") before locking it: workers starting together can lose each
            # other's bindings (a worker then never hears a broadcast). Once the file
            # exists, binds are locked read-modify-writes.
            control = self.dir / "broker" / "control"
            control.mkdir(parents=True, exist_ok=True)
            for name in (f"ctl-{self.queue}.pidbox", f"reply.ctl-{self.queue}.pidbox",
                         f"ev-{self.queue}", self.queue):
                (control / f"{name}.exchange").write_text("[]", encoding="utf-8")
        self.schedule = schedule or {}
        self.settings = settings or {}
        self.backend = backend
        self.procs: list[Proc] = []
        self.workers: dict[str, Proc] = {}   # hostname -> its process
        self._app: Any = None

    # -- environment --------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        # pytest-django sets it for this process; a plain Celery project has none
        # (a Django cluster sets it again through extra_env)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update({
            "CCS_TEST_BROKER": self.broker_url,
            "CCS_TEST_QUEUE": self.queue,
            "CCS_TEST_DIR": str(self.dir),
            "CCS_TEST_SCHEDULE": json.dumps(self.schedule),
            "CCS_TEST_SETTINGS": json.dumps(self.settings),
            "CCS_TEST_BACKEND": self.backend or "",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        env.update(extra)
        return env

    @property
    def app(self) -> Any:
        """A client app in the test process, configured like the workers."""
        if self._app is None:
            from tests.integration.proj import make_app
            self._app = make_app(self.env())
        return self._app

    # -- processes ------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], **env: str) -> Proc:
        log = self.dir / f"{name}.log"
        events = self.dir / f"{name}.events.jsonl"
        env.setdefault("CCS_TEST_EVENT_LOG", str(events))
        fh = open(log, "ab")  # noqa: SIM115 - closed when the process is reaped
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app_module, *args],
            cwd=self.dir, env=self.env(**env), stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True)
        fh.close()
        proc = Proc(name, popen, log, Path(env["CCS_TEST_EVENT_LOG"]))
        self.procs.append(proc)
        return proc

    def hostname(self, name: str) -> str:
        return f"{name}.{self.uid}@ccs"

    def start_worker(self, name: str = "w1", *, concurrency: int = 2, pool: str = "prefork",
                     wait: bool = True, **env: str) -> Proc:
        proc = self._spawn(name, ["worker", "-n", self.hostname(name), "-c", str(concurrency),
                                  "-P", pool, "-l", "info", "--without-mingle"],
                           CCS_TEST_WORKER=self.hostname(name), **env)
        self.workers[self.hostname(name)] = proc
        if wait:
            self.wait_for_workers([self.hostname(name)], proc=proc)
        return proc

    def wait_for_workers(self, hostnames: list[str], timeout: float = 60.0,
                         proc: Proc | None = None) -> None:
        """Wait until every worker in ``hostnames`` has answered a ping.

        Fails at once, with its log, if one of their processes exits; on a
        timeout the message names the silent workers and shows their logs.
        """
        wanted = set(hostnames)
        seen: set[str] = set()   # answered at least once (one ping need not reach all)
        procs = [p for p in [proc, *(self.workers.get(h) for h in hostnames)] if p is not None]

        def all_up() -> bool:
            for p in procs:
                if not p.alive():
                    raise AssertionError(f"{p.name} exited:\n{p.text()[-3000:]}")
            # a broker that has just restarted can leave the first use of a
            # connection failing, even for a new app (seen with kombu's redis
            # transport): those errors mean "ask again with a fresh app"
            reset = (OSError, *self.app.connection_for_write().connection_errors)
            try:
                replies = self.app.control.ping(timeout=0.5) or []
            except ValueError:
                # kombu's filesystem transport can read a reply file its writer
                # has created but not yet filled (JSONDecodeError): ask again
                return False
            except reset:
                self._app.close()
                self._app = None
                return False
            seen.update(host for reply in replies for host in reply)
            return wanted <= seen
        try:
            wait_until(all_up, timeout, interval=0.3, what=f"workers {sorted(wanted)}")
        except AssertionError as exc:
            silent = sorted(wanted - seen)
            logs = "\n".join(f"--- {h}:\n{self.workers[h].text()[-2000:]}"
                             for h in silent if h in self.workers)
            raise AssertionError(f"{exc}; silent: {silent}\n{logs}") from None

    def start_beat(self, name: str = "beat", *, scheduler: str = "ccs_beat.SingletonScheduler",
                   wait: bool = True, schedule_file: str = "schedule", **env: str) -> Proc:
        proc = self._spawn(name, ["beat", "-S", scheduler, "-s", str(self.dir / schedule_file),
                                  "-l", "info", "--max-interval", "1",
                                  "--pidfile", str(self.dir / f"{name}.pid")], **env)
        if wait:
            wait_until(lambda: "ccs_beat: " in proc.text() or not proc.alive(), 30,
                       what="beat to start")
            assert proc.alive(), f"beat exited:\n{proc.text()[-3000:]}"
        return proc

    def run_beat_to_exit(self, timeout: float = 60.0, *,
                         scheduler: str = "ccs_beat.SingletonScheduler",
                         ) -> subprocess.CompletedProcess:
        """Run beat in the foreground, expecting it to exit by itself."""
        return subprocess.run(
            [sys.executable, "-m", "celery", "-A", self.app_module, "beat", "-S",
             scheduler, "-s", str(self.dir / "schedule"), "-l", "info"],
            cwd=self.dir, env=self.env(), capture_output=True, text=True, timeout=timeout)

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, sig)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=10)

    def close(self) -> None:
        """Kill everything (the test is over; a warm shutdown would wait for tasks)."""
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)
        if self._app is not None:
            self._cleanup_broker()
            self._app.close()

    def _cleanup_broker(self) -> None:
        if self.broker_url.startswith("filesystem"):
            return
        from kombu import Queue
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                Queue(self.queue, channel=conn.default_channel).delete()
        except Exception:  # noqa: BLE001 - best effort
            pass

    # -- observations ---------------------------------------------------------

    def send(self, seconds: float, tag: str = "default", **options: Any) -> str:
        result = self.app.send_task("tests.sleep", args=[seconds], kwargs={"tag": tag},
                                    queue=self.queue, **options)
        return result.id

    def publish_bursts(self, copies: int, bursts: int, interval: float, seconds: float,
                       lead: float = 3.0) -> list[dict]:
        """Send ``copies`` identical guarded tasks per burst, each copy from its own
        process at the same agreed moment; wait for the publishers; return what
        they sent."""
        t0 = time.time() + lead   # time for every publisher to start and connect
        procs = [subprocess.Popen(
            [sys.executable, "-m", "tests.integration.publish", str(copy), str(bursts),
             repr(t0), repr(interval), repr(seconds)],
            cwd=self.dir, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True) for copy in range(copies)]
        try:
            for proc in procs:
                out, _ = proc.communicate(timeout=lead + bursts * interval + 60)
                assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        path = self.dir / "published.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def records(self) -> list[dict]:
        path = self.dir / "runs.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def runs(self, tag: str | None = None) -> list[Run]:
        """Every body that started, with its end if it ended, by start time."""
        starts, ends = {}, {}
        for rec in self.records():
            (starts if rec["kind"] == "start" else ends)[rec["id"]] = rec
        out = [Run(id=i, tag=s["tag"], start=s["t"], end=ends.get(i, {}).get("t"),
                   worker=s.get("worker"), stamp=s.get("stamp"), expires=s.get("expires"))
               for i, s in starts.items()]
        out = [r for r in out if tag is None or r.tag == tag]
        return sorted(out, key=lambda r: r.start)

    def finished_runs(self, tag: str | None = None) -> list[Run]:
        return [r for r in self.runs(tag) if r.end is not None]


def assert_no_overlap(runs: list[Run], now: float | None = None) -> None:
    """No two bodies ran at the same time (an unfinished run lasts until now)."""
    now = time.time() if now is None else now
    ordered = sorted(runs, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        end = a.end if a.end is not None else now
        assert end <= b.start, (
            f"runs overlap: {a.id} [{a.start:.3f}, {end:.3f}] on {a.worker} and "
            f"{b.id} started {b.start:.3f} on {b.worker}")
