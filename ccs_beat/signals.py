"""Signals sent by ccs_beat, in the style of :mod:`celery.signals`.

Connect with ``@entry_skipped.connect`` like any Celery signal. Handlers run in
the beat process, inside the tick, so keep them quick; an exception in a
handler is logged by Celery's dispatcher and does not stop beat.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

#: a due entry was not emitted. sender: the scheduler. kwargs: ``entry`` (the
#: schedule entry), ``key`` (identity key, or None), ``decision``
#: (:class:`ccs_beat.decide.Decision`: ``reason``, ``blocker``, ``unknown``).
entry_skipped = Signal(name="entry_skipped", providing_args={"entry", "key", "decision"})

#: a due (or buffered) entry was sent. kwargs: ``entry``, ``key``,
#: ``decision`` (None for entries with overlap allowed), ``task_id``,
#: ``buffered`` (True when this is a remembered run of ``buffer_one``).
entry_emitted = Signal(name="entry_emitted",
                       providing_args={"entry", "key", "decision", "task_id", "buffered"})

#: a guarded task stepped aside on a worker. sender: the task. kwargs:
#: ``task_id``, ``winner`` (:class:`ccs_beat.guard.Peer` or None), ``reason``,
#: ``unknown`` (the cluster read was incomplete and on_unknown=skip decided).
#: Runs in the worker's pool process.
duplicate_skipped = Signal(name="duplicate_skipped",
                           providing_args={"task_id", "winner", "reason", "unknown"})

__all__ = ["duplicate_skipped", "entry_emitted", "entry_skipped"]
