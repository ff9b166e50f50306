"""What a subclass of ccs_beat's scheduler can rely on: beat's emissions go
through ``self.apply_async``, as in stock Celery beat, and a direct call is
reported as one. Celery's in-memory transport carries the messages."""

from __future__ import annotations

import time

from celery import Celery

from ccs_beat import SingletonScheduler
from ccs_beat.signals import decision_made


def make_app(options: dict) -> Celery:
    app = Celery("t", broker="memory://", set_as_current=False)
    app.conf.beat_schedule = {"plain": {"task": "t.plain", "schedule": 0.1,
                                        "options": options}}
    app.conf.ccs_beat_inspect_timeout = 0.05
    return app


class Audited(SingletonScheduler):
    """A user's subclass that audits (or routes) every message beat sends."""

    calls: list

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        self.calls.append((entry.name, dict(entry.options)))
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)


def tick_a_few_times(app: Celery, tmp_path) -> Audited:
    Audited.calls = []
    beat = Audited(app=app, schedule_filename=str(tmp_path / "s"), lazy=False)
    try:
        time.sleep(0.15)
        for _ in range(3):
            beat.tick()
            time.sleep(0.12)
    finally:
        beat.close()
    return beat


def test_a_subclass_apply_async_sees_every_emission_of_a_plain_entry(tmp_path):
    beat = tick_a_few_times(make_app({"singleton": False}), tmp_path)
    assert len(beat.calls) >= 2 and {name for name, _ in beat.calls} == {"plain"}


def test_a_subclass_apply_async_sees_a_singletons_emission_decided_and_stamped(tmp_path):
    beat = tick_a_few_times(make_app({"singleton": {"on_unknown": "emit"}}), tmp_path)
    assert beat.calls, "beat sent nothing"
    name, options = beat.calls[0]
    assert name == "plain" and "singleton" not in options
    assert "ccs_beat" in options["headers"] and options["task_id"]


def test_a_direct_apply_async_is_reported_as_sent_directly(tmp_path):
    app = make_app({"singleton": False})
    got = []

    def receiver(sender=None, event=None, **_):
        got.append(event)
    beat = SingletonScheduler(app=app, schedule_filename=str(tmp_path / "s"), lazy=False)
    decision_made.connect(receiver, weak=False)
    try:
        beat.apply_async(beat.schedule["plain"], advance=False)
    finally:
        decision_made.disconnect(receiver)
        beat.close()
    assert [(e.action, e.reason, e.entry) for e in got] == [("emit", "sent_directly", "plain")]
