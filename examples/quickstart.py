"""Quick start: a long job due every 2 seconds that runs for 5.

Runs on Celery's filesystem transport by default (no server to install); set
``CCS_BROKER_URL`` (for example ``redis://localhost:6379/0``) to use a real
broker. Start a worker and beat in two terminals, from the repository root::

    celery -A examples.quickstart worker -l info -c 2
    celery -A examples.quickstart beat -S ccs_beat.SingletonScheduler -l info

Beat logs ``ccs_beat: emitted ...`` when it sends the job and
``ccs_beat: skipped ...`` (naming the running task, its worker and age) while
the previous run is still going; the worker never runs two at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

BROKER = os.environ.get("CCS_BROKER_URL", "filesystem://")

app = Celery("quickstart", broker=BROKER)

if BROKER.startswith("filesystem"):
    base = Path(os.environ.get("CCS_QUICKSTART_DIR", ".ccs-quickstart")).resolve()
    folders = {name: base / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),   # broadcasts: needed by ccs_beat
        "store_processed": False,
        "polling_interval": 0.1,
    }

app.conf.beat_schedule = {
    "slow-report": {
        "task": "quickstart.slow_report",
        "schedule": 2.0,
        "options": {"singleton": True},
    },
    "heartbeat": {
        "task": "quickstart.heartbeat",
        "schedule": 2.0,
        "options": {"singleton": False},   # plain beat: never checked
    },
}


@app.task(name="quickstart.slow_report")
def slow_report() -> str:
    """Takes longer than its period, like a nightly GC on a busy night."""
    time.sleep(5)
    return "report done"


@app.task(name="quickstart.heartbeat")
def heartbeat() -> str:
    return "ok"
