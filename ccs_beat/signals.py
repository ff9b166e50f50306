"""Signals sent by ccs_beat, in the style of :mod:`celery.signals`.

Connect with ``@entry_skipped.connect`` like any Celery signal. Handlers run in
the beat process, inside the tick, so keep them quick; an exception in a
handler is logged by Celery's dispatcher and does not stop beat.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

#: every decision: beat emitting or skipping a due entry, a guarded task
#: running or stepping aside. sender: the scheduler or the task. kwargs:
#: ``event`` (:class:`ccs_beat.events.DecisionEvent`). The one signal a
#: metrics exporter needs.
decision_made = Signal(name="decision_made", providing_args={"event"})

#: a due entry was not emitted. sender: the scheduler. kwargs: ``entry`` (the
#: schedule entry), ``key`` (identity key, or None), ``decision``
#: (:class:`ccs_beat.decide.Decision`: ``reason``, ``detail``, ``blocker``,
#: ``unknown``), ``event`` (its :class:`~ccs_beat.events.DecisionEvent`).
entry_skipped = Signal(name="entry_skipped",
                       providing_args={"entry", "key", "decision", "event"})

#: a due (or buffered) entry was sent. kwargs: ``entry``, ``key``,
#: ``decision`` (None for entries with overlap allowed), ``task_id``,
#: ``buffered`` (True when this is a remembered run of ``buffer_one``), ``event``.
entry_emitted = Signal(name="entry_emitted",
                       providing_args={"entry", "key", "decision", "task_id", "buffered",
                                       "event"})

#: a guarded task stepped aside on a worker. sender: the task. kwargs:
#: ``task_id``, ``winner`` (:class:`ccs_beat.guard.Peer` or None), ``reason``
#: (in words), ``unknown`` (the cluster read was incomplete and on_unknown=skip
#: decided), ``event``. Runs in the worker's pool process.
duplicate_skipped = Signal(name="duplicate_skipped",
                           providing_args={"task_id", "winner", "reason", "unknown", "event"})

__all__ = ["decision_made", "duplicate_skipped", "entry_emitted", "entry_skipped"]
