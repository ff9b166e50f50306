"""The Celery app that integration tests run in real worker and beat processes.

Everything comes from environment variables set by :mod:`tests.integration.harness`
so that every test gets its own queue, control exchange and run directory, and
parallel or leftover runs cannot see each other.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from celery import Celery


def _atomic_filesystem_put(self, queue, payload, **kwargs):
    """kombu's filesystem transport writes a message file in place, and a reader
    in another process can move and read it before it is filled: a worker then
    dies on a JSONDecodeError (seen when four workers start under load while
    the test pings them). Write it under a name no reader picks up, then rename
    it: a rename is atomic. Test infrastructure only; RabbitMQ and Redis runs
    are untouched."""
    from kombu.transport.filesystem import ChannelError
    from kombu.utils.encoding import str_to_bytes
    from kombu.utils.json import dumps
    token = uuid.uuid4()
    name = f"{round(time.monotonic() * 1000)}_{token}.{queue}.msg"
    final = os.path.join(self.data_folder_out, name)
    partial = os.path.join(self.data_folder_out, f"partial-{token}")
    try:
        with open(partial, "wb") as fh:
            fh.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)
    except OSError as exc:
        raise ChannelError(f"Cannot add file {final!r} to directory") from exc


def _use_atomic_filesystem_writes() -> None:
    from kombu.transport import filesystem
    filesystem.Channel._put = _atomic_filesystem_put


_use_atomic_filesystem_writes()

if not os.environ.get("CCS_TEST_NO_IMPORT"):
    import ccs_beat  # noqa: F401 - workers serve the ccs_snapshot command

if os.environ.get("CCS_TEST_LEGACY_WORKER"):
    # Simulate a worker without ccs_beat: forget the inspect command.
    from celery.worker.control import Panel

    from ccs_beat.replies import COMMAND

    Panel.data.pop(COMMAND, None)
    Panel.meta.pop(COMMAND, None)


def make_app(env: dict[str, str]) -> Celery:
    broker = env["CCS_TEST_BROKER"]
    queue = env["CCS_TEST_QUEUE"]
    run_dir = env["CCS_TEST_DIR"]
    app = Celery("ccs_test", broker=broker, backend=env.get("CCS_TEST_BACKEND") or None)
    conf = {
        "task_default_queue": queue,
        "control_exchange": f"ctl-{queue}",
        "event_exchange": f"ev-{queue}",
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "beat_schedule": json.loads(env.get("CCS_TEST_SCHEDULE") or "{}"),
        "result_expires": None,
        "worker_hijack_root_logger": True,
        # each process writes its decisions here; tests read them back, never log text
        "ccs_beat_event_log": env.get("CCS_TEST_EVENT_LOG") or None,
    }
    if broker.startswith("filesystem"):
        folders = {name: os.path.join(run_dir, "broker", name)
                   for name in ("in", "processed", "control")}
        for path in folders.values():
            os.makedirs(path, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": folders["in"], "data_folder_out": folders["in"],
            "processed_folder": folders["processed"], "control_folder": folders["control"],
            "store_processed": False, "polling_interval": 0.05,
        }
    conf.update(json.loads(env.get("CCS_TEST_SETTINGS") or "{}"))
    app.conf.update(conf)
    return app


app = make_app(dict(os.environ)) if "CCS_TEST_BROKER" in os.environ else Celery("ccs_test")


def _record(kind: str, task_id: str, payload: dict) -> None:
    run_dir = os.environ["CCS_TEST_DIR"]
    line = json.dumps({"kind": kind, "id": task_id, "host": socket.gethostname(),
                       "worker": os.environ.get("CCS_TEST_WORKER"), "pid": os.getpid(),
                       **payload})
    with open(os.path.join(run_dir, "runs.jsonl"), "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _body(task, seconds: float, tag: str) -> str:
    """Sleep ``seconds``; record when the body started and ended."""
    start = time.time()
    expires = task.request.expires
    _record("start", task.request.id, {
        "tag": tag, "t": start, "stamp": getattr(task.request, "ccs_beat", None),
        "expires": expires.isoformat() if hasattr(expires, "isoformat") else expires})
    time.sleep(seconds)
    _record("end", task.request.id, {"tag": tag, "start": start, "t": time.time()})
    return tag


@app.task(name="tests.sleep", bind=True)
def sleep(self, seconds: float, tag: str = "default") -> str:
    return _body(self, seconds, tag)


if not os.environ.get("CCS_TEST_NO_IMPORT"):
    from ccs_beat import SingletonTask

    @app.task(name="tests.guarded", bind=True, base=SingletonTask, singleton=True)
    def guarded(self, seconds: float, tag: str = "default") -> str:
        """A declared singleton: duplicates step aside on the worker."""
        return _body(self, seconds, tag)


if os.environ.get("CCS_TEST_SLOW_SKIP"):
    # Receivers that take their time (a slow result backend, a slow notification
    # or metrics push): the skipping copy stays on the active list meanwhile
    from ccs_beat.signals import duplicate_skipped

    @duplicate_skipped.connect(weak=False)
    def _slow_receiver(sender=None, **_kwargs) -> None:
        time.sleep(float(os.environ["CCS_TEST_SLOW_SKIP"]))

    from ccs_beat.signals import decision_made

    @decision_made.connect(weak=False)
    def _slow_metrics(sender=None, event=None, **_kwargs) -> None:
        # a metrics exporter that blocks: the guard's report of a step aside
        # must not keep the skipping copy a peer meanwhile
        if event is not None and event.action == "step_aside":
            time.sleep(float(os.environ["CCS_TEST_SLOW_SKIP"]))


if os.environ.get("CCS_TEST_KILL_AFTER_PUBLISH"):
    # Fault injection (tests/faults/test_beat_killed.py): this beat process
    # kills itself with SIGKILL right after it published a task message --
    # the worst moment, before it can save its ledger at the end of the burst.
    from celery.signals import after_task_publish

    @after_task_publish.connect(weak=False)
    def _die_after_publish(sender=None, headers=None, **_kwargs) -> None:
        print(f"fault injection: published {headers.get('id')}; killing beat", flush=True)
        time.sleep(0.3)                    # let the socket hand the message to the broker
        os.kill(os.getpid(), 9)
