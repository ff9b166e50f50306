"""``SingletonTask``: the worker-side guard, and the sender's stamp.

Beat's check cannot see every overlap: a manual ``.delay()`` of the same task,
two beats, a message redelivered after a worker died, a backlog from before
ccs_beat. The guard runs where the body would: when a guarded task starts on a
worker it waits the settle delay ``D``, reads the cluster once (replies within
``T``), and lets :func:`ccs_beat.guard.decide_run` say whether its body runs or it
steps aside. This module is only the Celery plumbing around that pure rule.

Guarded tasks are those of a ``SingletonTask`` class that

* carry beat's singleton stamp (an entry with a ``singleton`` policy), or
* are declared singleton: ``@app.task(base=SingletonTask, singleton=True)``
  (or a policy name / dict, the same vocabulary as beat's option),

whatever sent them. Every other task goes straight to its body.

Every process that imports ccs_beat stamps the messages of singleton tasks it
publishes (``before_task_publish``) with the sender's clock and the key, so
duplicates are ranked the same way by every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from celery import Task, signals
from celery._state import get_current_app
from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore

from . import covering, skipping
from . import signals as ccs_signals
from .cluster import ClusterReader
from .control import STAMP_HEADER, make_stamp, stamp_of
from .errors import ConfigurationError, UnkeyableError
from .events import DecisionEvent, GuardAction, Reason
from .guard import (
    GuardTiming,
    GuardVerdict,
    is_clock,
)
from .identity import DEFAULT_KEY, task_key
from .judging import Copy, guard_event, judge_copy, sent_times, unlisted
from .logs import get_logger
from .policy import Policy, Settings, load_settings, parse_policy
from .reporting import report

logger = get_logger("ccs_beat.guard")

#: result state of a duplicate that stepped aside (not SUCCESS, not FAILURE)
STATE_SKIPPED = "SKIPPED"

_local = threading.local()


class SingletonTask(Task):
    """A task whose duplicates step aside instead of running side by side.

    Set ``singleton`` on the task to guard every call, however it is sent::

        @app.task(base=SingletonTask, singleton=True)
        def update_all_users(): ...

        @app.task(base=SingletonTask, singleton={"key": ["tenant"]})
        def rebuild_index(tenant, full=False): ...

    or make it the app's default class (``Celery(..., task_cls=
    "ccs_beat:SingletonTask")``) so that every task beat emits with a
    ``singleton`` policy is also guarded on the worker. Without ``singleton``,
    a ``SingletonTask`` is guarded only when beat's stamp says so.

    A duplicate that steps aside does not run its body, is not retried, ends
    within ``D + T`` and leaves the result state ``SKIPPED`` (``info`` names
    the winner); its callbacks do not run.
    """

    #: True / False / "skip" / a policy dict; None: guard only stamped messages
    singleton: Any = None

    _ccs_policy_cache: tuple[Any, Policy | None] | None = None

    # -- policy ----------------------------------------------------------------

    def ccs_policy(self) -> Policy | None:
        """The declared policy (validated once), or None if not declared."""
        cached = self._ccs_policy_cache
        if cached is not None and cached[0] is self.singleton:
            return cached[1]
        policy = None
        if self.singleton is not None:
            settings = _settings(self.app)
            policy = parse_policy(self.singleton, default=settings.default_policy,
                                  where=f"task {self.name!r}: singleton",
                                  functions=settings.key_functions, from_code=True)
        self._ccs_policy_cache = (self.singleton, policy)
        return policy

    # -- execution ---------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request_stack.top
        if request is None or request.called_directly or request.is_eager or not request.id:
            return super().__call__(*args, **kwargs)
        # the unguarded path is two dict lookups: every task of an app whose
        # task_cls is SingletonTask comes through here
        stamp = stamp_of(request)
        if self.singleton is None and not (stamp and "key" in stamp):
            return self.run(*args, **kwargs)
        try:
            policy = self.ccs_policy()
        except ConfigurationError as exc:
            self._ccs_unguarded(str(exc))
            return self.run(*args, **kwargs)
        declared = policy is not None and policy.checked
        if not declared and not (stamp and "key" in stamp):
            return self.run(*args, **kwargs)
        try:
            decided = self._ccs_guard(args, kwargs, stamp, policy)
        except ConfigurationError as exc:   # bad ccs_beat_* settings: logged at start too
            self._ccs_unguarded(str(exc))
            decided = None
        if decided is None:
            return self._ccs_run(request.id, args, kwargs)
        verdict, event = decided
        if not verdict.run:
            # first of all: from now on this copy is no peer (see ccs_beat.skipping),
            # however long the report's receivers and the SKIPPED write take
            skipping.mark(request.id)
        self._ccs_report(verdict, event)
        if verdict.run:
            return self._ccs_run(request.id, args, kwargs)
        self._ccs_step_aside(verdict, event)
        raise Ignore()   # acknowledged, no retry, no callbacks; state set above

    def _ccs_run(self, task_id: str, args: Any, kwargs: Any) -> Any:
        """The body, and what its end means for the requests it covered: a
        body that returned has served them; one that raised (an error, a
        retry, a time limit, a terminate) has not, and they decide again."""
        try:
            result = self.run(*args, **kwargs)
        except BaseException:
            covering.dropped(task_id)
            raise
        covering.ended(task_id)
        return result

    def _ccs_guard(self, args: Any, kwargs: Any, stamp: Mapping[str, Any] | None,
                   policy: Policy | None) -> tuple[GuardVerdict, DecisionEvent] | None:
        """Wait ``D``, read the cluster, decide. None: cannot be keyed (named
        at ERROR), the body runs unguarded."""
        request = self.request
        settings = _settings(self.app)
        spec = policy.key if policy is not None else DEFAULT_KEY
        try:
            key = (stamp["key"] if stamp and isinstance(stamp.get("key"), str)
                   else task_key(self.name, args, kwargs, spec))
        except UnkeyableError as exc:
            self._ccs_unguarded(f"cannot key {self.name}[{request.id}] ({exc})")
            return None
        timing = settings.guard_timing
        self._ccs_warn_time_limit(timing)
        began, started = time.time(), time.monotonic()
        time.sleep(timing.delay)
        snapshot = _reader(self.app, settings).read([self.name], legacy=False)
        copy = Copy(id=request.id, worker=request.hostname, name=self.name, key=key,
                    spec=spec, stamp=stamp, began=began)
        verdict, covered = judge_copy(snapshot, copy, timing,
                                      policy.on_unknown if policy is not None else "emit")
        if verdict.run:
            covering.record(request.id, self.name, covered, sent_times(snapshot, covered))
        if unlisted(snapshot, copy):
            logger.warning("ccs_beat guard: %s[%s]: its own worker did not list it as running "
                           "when it read the cluster (the pool reported it late): peers could "
                           "not see it, so an identical task may run beside it", self.name,
                           request.id)
        took = time.monotonic() - started
        self._ccs_warn_slow(took, timing)
        return verdict, guard_event(verdict, copy, policy, took, snapshot.taken_at)

    def _ccs_report(self, verdict: GuardVerdict, event: DecisionEvent) -> None:
        report(logger, logging.WARNING if verdict.unknown else logging.INFO, event,
               "ccs_beat guard: %s %s[%s]: %s (decided in %.2fs)",
               "running" if verdict.run else "skipped duplicate", self.name, event.task_id,
               verdict.detail, event.took or 0.0, sender=self,
               event_log=_settings(self.app).event_log)

    def _ccs_unguarded(self, why: str) -> None:
        """Report (at ERROR) a body that runs without the guard: bad settings,
        a bad declaration, arguments that cannot be keyed."""
        request = self.request
        event = DecisionEvent(source="guard", action=GuardAction.RUN, reason=Reason.UNGUARDED,
                              detail=why, at=time.time(), task=self.name, task_id=request.id,
                              worker=request.hostname)
        try:
            event_log = _settings(self.app).event_log
        except ConfigurationError:
            event_log = None   # the settings are what is wrong: no file to name
        report(logger, logging.ERROR, event, "ccs_beat guard: %s; running %s[%s] unguarded",
               why, self.name, request.id, sender=self, event_log=event_log)

    def _ccs_warn_time_limit(self, timing: GuardTiming) -> None:
        limit = _too_short(getattr(self.request, "timelimit", None) or (), timing)
        if limit is not None:
            logger.warning("ccs_beat guard: %s[%s] was sent with a time limit of %gs, shorter "
                           "than the guard's D + T + margin (%gs): it may be stopped before "
                           "its body starts", self.name, self.request.id, limit,
                           timing.committed_after)

    def _ccs_warn_slow(self, took: float, timing: GuardTiming) -> None:
        if took > timing.committed_after - timing.margin / 2:
            logger.warning("ccs_beat guard: %s[%s] took %.2fs to decide, longer than D + T "
                           "+ margin/2 (%gs); is this worker starved of CPU?", self.name,
                           self.request.id, took, timing.committed_after - timing.margin / 2)

    def _ccs_step_aside(self, verdict: GuardVerdict, event: DecisionEvent) -> None:
        """Record a copy that stepped aside (marked as no peer already)."""
        request = self.request
        winner = verdict.winner
        same_id = winner is not None and winner.task_id == request.id
        if not same_id and not self.ignore_result and _has_backend(self.app):
            meta = {"reason": verdict.detail,
                    "winner": winner.task_id if winner else None,
                    "winner_worker": winner.worker if winner else None}
            try:
                self.update_state(state=STATE_SKIPPED, meta=meta)
            except Exception as exc:  # noqa: BLE001 - a backend hiccup must not run the body
                logger.warning("ccs_beat guard: could not record %s for %s: %r", STATE_SKIPPED,
                               request.id, exc)
        ccs_signals.duplicate_skipped.send(sender=self, task_id=request.id, winner=winner,
                                           reason=verdict.detail, unknown=verdict.unknown,
                                           event=event)
        if getattr(request, "chord", None):
            logger.warning("ccs_beat guard: %s[%s] is a member of a chord's header and stepped "
                           "aside: Celery counts only members that succeed or fail, so that "
                           "chord's body will not run. Do not put guarded singletons in a "
                           "chord's header.", self.name, request.id)


# -- helpers -----------------------------------------------------------------------


def _settings(app: Any) -> Settings:
    cache = getattr(_local, "settings", None)
    if cache is None or cache[0] is not app:
        cache = (app, load_settings(app.conf))
        _local.settings = cache
    return cache[1]


def _reader(app: Any, settings: Settings) -> ClusterReader:
    """One reader per thread (and so per pool process), kept for its membership."""
    reader = getattr(_local, "reader", None)
    if reader is None or reader.app is not app:
        reader = ClusterReader.for_settings(app, settings, timeout=settings.guard_timeout)
        _local.reader = reader
    return reader


def _has_backend(app: Any) -> bool:
    return not isinstance(app.backend, DisabledBackend)


# -- the sender's stamp ----------------------------------------------------------------


@signals.before_task_publish.connect(weak=False)
def _stamp_on_publish(sender: Any = None, body: Any = None, headers: Any = None,
                      **_: Any) -> None:
    """Stamp a singleton task's message with the sender's clock and its key.

    Registered task: stamped only if it is a declared singleton (key
    included). A name this process does not know (``send_task`` from a web
    process without the task module): stamped with the clock only, which is
    all a rank needs. Plain tasks pay one dict lookup.
    """
    if not isinstance(headers, dict) or STAMP_HEADER in headers:
        return
    name = headers.get("task") or sender
    if not isinstance(name, str):
        return
    task = get_current_app().tasks.get(name)
    if task is None:
        headers[STAMP_HEADER] = {"v": 1, "sent_at": time.time()}
        return
    if not isinstance(task, SingletonTask) or task.singleton is None:
        return
    try:
        policy = task.ccs_policy()
    except ConfigurationError as exc:
        logger.error("ccs_beat: %s; sending %s unstamped", exc, name)
        return
    if policy is None or not policy.checked:
        return
    args, kwargs = _call_of(body, headers)
    try:
        key = task_key(name, args, kwargs, policy.key)
    except UnkeyableError as exc:
        logger.warning("ccs_beat: cannot key %s[%s] (%s); its workers will run it unguarded",
                       name, headers.get("id"), exc)
        headers[STAMP_HEADER] = {"v": 1, "sent_at": time.time()}
        return
    headers[STAMP_HEADER] = make_stamp(key)


def _call_of(body: Any, headers: Mapping[str, Any]) -> tuple[Any, Any]:
    if isinstance(body, (tuple, list)) and len(body) >= 2:     # protocol 2
        return body[0], body[1]
    if isinstance(body, Mapping):                               # protocol 1
        return body.get("args"), body.get("kwargs")
    return (), {}


# -- time limits ---------------------------------------------------------------------


def _too_short(limits: Any, timing: GuardTiming) -> float | None:
    """The shortest of ``limits`` (seconds) that ends before a guard can have
    decided (``D + T + margin``), or None."""
    short = [float(v) for v in limits if is_clock(v) and 0 < float(v) <= timing.committed_after]
    return min(short) if short else None


def _check_time_limits(app: Any, tasks: list[Any], timing: GuardTiming) -> None:
    """A time limit shorter than the guard's decision kills every copy before
    its body starts, so no copy ever runs: say so at start, naming the task."""
    for task in tasks:
        limits = (task.soft_time_limit or app.conf.task_soft_time_limit,
                  task.time_limit or app.conf.task_time_limit)
        limit = _too_short(limits, timing)
        if limit is not None:
            logger.error("ccs_beat guard: %s has a time limit of %gs, but its guard takes up "
                         "to D + T + margin = %gs before the body starts: every guarded copy "
                         "would be stopped before it runs. Raise the limit or lower "
                         "ccs_beat_guard_delay/timeout.", task.name, limit,
                         timing.committed_after)


# -- worker start --------------------------------------------------------------------


@signals.celeryd_after_setup.connect(weak=False)
def _check_worker(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Validate guarded tasks and warn about pools that cannot answer reads.

    Runs once the worker's logging is set up, before it consumes.
    """
    sender = instance
    app = getattr(sender, "app", None)
    if app is None:
        return
    try:
        skipping.start()
    except OSError as exc:
        logger.warning("ccs_beat guard: cannot keep the marks of skipping copies (%r); a "
                       "copy that skips is seen as a peer until its body returns", exc)
    try:
        settings = load_settings(app.conf)
    except ConfigurationError as exc:
        logger.error("ccs_beat: %s", exc)
        return
    guarded = []
    for name, task in sorted(app.tasks.items()):
        if not isinstance(task, SingletonTask):
            continue
        try:
            task.ccs_policy()
        except ConfigurationError as exc:
            logger.error("ccs_beat guard: %s; that task will run unguarded", exc)
            continue
        guarded.append(name)
    if not guarded:
        return
    _check_time_limits(app, [app.tasks[name] for name in guarded], settings.guard_timing)
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "") or ""
    if "solo" in pool_name.lower():
        logger.warning(
            "ccs_beat guard: this worker uses the solo pool, which cannot answer broadcasts "
            "while it runs a task: other workers' guards (and beat) cannot see what it runs, "
            "so a duplicate of %s may run elsewhere at the same time. Use prefork or threads.",
            ", ".join(guarded))
    logger.debug("ccs_beat guard: D=%gs T=%gs margin=%gs for %s", settings.guard_delay,
                 settings.guard_timeout, settings.guard_margin, ", ".join(guarded))


__all__ = ["STATE_SKIPPED", "SingletonTask"]
