"""Text from outside cannot forge a line in ccs_beat's log or CLI output."""

from __future__ import annotations

import logging

import pytest

from ccs_beat.logs import get_logger, printable
from ccs_beat.snapshot import SeenTask, Snapshot, WorkerView
from ccs_beat.status import build_report, render

FORGED = "abc\n[2026-12-03 08:00:00,000: CRITICAL/MainProcess] beat: shutting down\r\x1b[2K"


@pytest.mark.parametrize("name", ["ccs_beat", "ccs_beat.guard", "ccs_beat.cluster"])
def test_a_logged_task_id_with_a_newline_stays_on_one_line(name, caplog):
    logger = get_logger(name)
    with caplog.at_level(logging.INFO, logger=name):
        logger.info("ccs_beat: skipped %r (%s): identical task (id %s)", "gc", "jobs.gc",
                    FORGED)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "abc\\x0a[2026-12-03" in message and "\\x1b[2K" in message


def test_printable_keeps_ordinary_text_and_escapes_bidi_overrides():
    assert printable("emitted 'gc' as 1f2e-…: nothing running") == \
        "emitted 'gc' as 1f2e-…: nothing running"
    assert printable("a\u202eb") == "a\\u202eb"


def test_status_output_puts_a_forged_task_id_on_its_own_row():
    now = 1000.0
    task = SeenTask(id=FORGED, name="jobs.gc", args=[], kwargs={}, state="active",
                    worker="w1@h", time_start=now - 1, worker_now=now,
                    stamp={"key": "jobs.gc", "sent_at": now - 2})
    view = WorkerView(hostname="w1@h", tasks=(task,), now=now, peers=frozenset({"w1@h"}))
    text = render(build_report(Snapshot(taken_at=now, workers={"w1@h": view}, timeout=1.0),
                               {}, {}, None, None, "x", now=now))
    assert not any(line.startswith("[2026-12-03") for line in text.splitlines())
    assert "abc\\x0a[2026-12-03" in text
