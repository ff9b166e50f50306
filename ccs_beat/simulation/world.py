"""One scenario replayed under one rule, event by event in true time.

Why an event loop: a reply must show exactly what its worker held at the
instant the query reached it (or, on a stalled worker, when its main process
woke up), and pool slots, waiting requests, skipping marks and covering
records all change in between. Events are kept in a heap ordered by true time
and then by the order they were scheduled, so a replay is deterministic.

The guard's decision is the production path: the collected reply bodies go
through ``replies.snapshot_from_replies`` (``parse_reply``, ``Membership``)
and the snapshot through ``judging.judge_copy`` -- both looked up on their
modules at call time, so a broken one shows in the table.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from ..identity import DEFAULT_KEY, task_key
from ..snapshot import Membership
from .model import (
    COUNTDOWN,
    CRASH_WINDOW,
    ETA_AHEAD,
    MAX_LAG,
    REDELIVERY_LAG,
    RULES,
    STALL,
    TALK_DELAY,
    TASK_ARGS,
    TASK_KWARGS,
    TASK_NAME,
    WORKER_EXPIRY,
    Condition,
    Scenario,
    worker_name,
)
from .outcome import Body, Outcome
from .replies import reply
from .rules import ccs_decides, talk_decides
from .state import PID_BASE, CoverRecord, Reader, Request, Worker

KEY = task_key(TASK_NAME, list(TASK_ARGS), dict(TASK_KWARGS), DEFAULT_KEY)


class World:
    """The workers, the broker and the guards of one replay."""

    def __init__(self, scenario: Scenario, condition: Condition, rule: str,
                 trace: list[str] | None = None) -> None:
        assert rule in RULES
        self.sc, self.cond, self.rule, self.trace = scenario, condition, rule, trace
        self.guarded = rule == RULES[0]
        self.timing = condition.timing
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.bodies: list[Body] = []
        self.killed: list[str] = []
        self.first_run = True
        self.workers = self._make_workers()
        self._send_burst()

    # -- set-up ---------------------------------------------------------------

    def _make_workers(self) -> list[Worker]:
        sc, dice, cond = self.sc, self.sc.dice, self.cond
        count = sc.workers + (1 if dice("join?") < cond.p_join else 0)
        workers = []
        for w in range(count):
            worker = Worker(index=w, name=worker_name(w), skew=sc.skews[w])
            if w == sc.workers:
                worker.joined = dice.uniform(0.5, 4.0, "joined")
            for s in range(sc.slots[w]):
                pid, busy = PID_BASE + 100 * w + s, sc.busy[w][s]
                if busy > 0.0 and w < sc.workers:
                    self.at(busy, self._slot_free, worker, pid)
                else:
                    worker.free.append(pid)
            workers.append(worker)
        if dice("crash?") < cond.p_crash:
            victim = workers[dice.pick(sc.workers, "crash worker")]
            self.at(dice.uniform(0.0, CRASH_WINDOW, "crash at"), self._crash, victim)
        if dice("stall?") < cond.p_stall:
            start = dice.uniform(0.0, CRASH_WINDOW, "stall at")
            workers[dice.pick(sc.workers, "stall worker")].stall = (start, start + STALL)
        return workers

    def _send_burst(self) -> None:
        cond, dice = self.cond, self.sc.dice
        ahead = dice.uniform(*ETA_AHEAD, "eta")
        for send in self.sc.sends:
            stamp = None
            if send.stamp_dice < cond.stamped:
                stamp = {"v": 1, "key": KEY, "sent_at": send.sent + send.sender_skew}
            eta = send.sent + send.sender_skew + ahead if cond.eta else None
            request = Request(label=send.label, task_id=send.task_id, sent=send.sent,
                              stamp=stamp, worker=-1, eta_clock=eta)
            self.at(send.sent + send.lag, self._deliver, request)

    # -- the loop -------------------------------------------------------------

    def at(self, t: float, handler: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, handler, args))

    def log(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:8.3f}  {text}")

    def play(self) -> Outcome:
        while self._events:
            self.now, _, handler, args = heapq.heappop(self._events)
            handler(*args)
        return Outcome(bodies=tuple(self.bodies), killed=tuple(self.killed))

    # -- broker and pool ------------------------------------------------------

    def _deliver(self, request: Request) -> None:
        """The broker hands a message to a live worker; an ETA one waits in
        ``scheduled`` until the worker's own clock reaches the ETA."""
        t = self.now
        alive = [w for w in self.workers if w.alive(t)]
        same = self.workers[request.worker] if request.worker >= 0 else None
        worker = same if (request.prefer_same and same is not None and same.alive(t)) \
            else alive[self.sc.dice.pick(len(alive), "target", request.label)]
        request.worker = worker.index
        self.log(f"{request.label} ({request.task_id}) delivered to {worker.name}")
        if request.eta_clock is not None and request.eta_clock - worker.skew > t:
            worker.scheduled.append(request)
            self.at(request.eta_clock - worker.skew, self._due, request)
            return
        worker.held.append(request)
        self._try_start(worker)

    def _due(self, request: Request) -> None:
        worker = self.workers[request.worker]
        if request.finished or request not in worker.scheduled:
            return
        worker.scheduled.remove(request)
        worker.held.append(request)
        self._try_start(worker)

    def _slot_free(self, worker: Worker, pid: int) -> None:
        if worker.alive(self.now):
            worker.free.append(pid)
            self._try_start(worker)

    def _try_start(self, worker: Worker) -> None:
        """Waiting requests take free pool slots, oldest first."""
        waiting = [r for r in worker.held if r.started is None]
        while worker.free and waiting:
            self._start(worker, waiting.pop(0), worker.free.pop(0))

    def _start(self, worker: Worker, request: Request, pid: int) -> None:
        t, dice = self.now, self.sc.dice
        request.pid, request.started, request.time_start = pid, t, worker.clock(t)
        lag = dice("registration", request.label) * self.cond.registration_lag
        self.at(t + lag, self._register, request)
        delay = self.timing.delay if self.guarded else TALK_DELAY
        self.at(t + delay, self._query, request)
        self.log(f"{request.label} starts on {worker.name} pid {pid}, time_start "
                 f"{request.time_start:.3f}, registered after {lag * 1000:.0f} ms")

    def _register(self, request: Request) -> None:
        if not request.finished:
            request.registered = True

    # -- the guard's read -----------------------------------------------------

    def membership(self, worker: Worker, pid: int) -> Membership:
        """The pool process's reader membership: warm (it read before the
        burst) on the workers there from the start, empty on a joiner."""
        found = worker.memberships.get(pid)
        if found is None:
            found = worker.memberships[pid] = Membership(WORKER_EXPIRY)
            if worker.index < self.sc.workers:
                found.observe(-5.0, answered=[w.name for w in self.workers[:self.sc.workers]],
                              peer_lists=[], silent=())
        return found

    def _query(self, request: Request) -> None:
        """The guard broadcasts; each live worker answers when its main process
        can, and the reply comes back unless lost or late."""
        if request.finished:
            return
        t, big_t, dice = self.now, self.timing.timeout, self.sc.dice
        me = self.workers[request.worker]
        assert request.pid is not None     # it holds a pool slot while it guards
        expected = set(self.membership(me, request.pid).expected()) if self.guarded else set()
        request.reader = Reader(query=t, deadline=t + big_t, expected=expected)
        for worker in self.workers:
            reach = t + dice.uniform(0.0, big_t / 4, "to", request.label, worker.index)
            if not worker.alive(reach):
                continue
            if dice("lost", request.label, worker.index) < self.cond.p_lost:
                continue
            if worker.stall is not None and worker.stall[0] <= reach < worker.stall[1]:
                reach = worker.stall[1]
            self.at(reach, self._answer, request, worker)
        self.at(t + big_t, self._deadline, request)

    def _answer(self, request: Request, worker: Worker) -> None:
        if not worker.alive(self.now):
            return
        dice, big_t = self.sc.dice, self.timing.timeout
        payload = reply(worker, self.workers, self.now, self.guarded)
        back = dice.uniform(0.0, 3 * big_t / 4, "back", request.label, worker.index)
        if dice("late", request.label, worker.index) < self.cond.p_late:
            back += big_t
        self.at(self.now + back, self._arrive, request, worker.name, payload)

    def _arrive(self, request: Request, host: str, payload: dict[str, Any]) -> None:
        reader = request.reader
        if request.decided or request.finished or reader is None \
                or self.now > reader.deadline:
            return
        reader.receive(host, payload)
        if self.guarded and reader.done():
            self._decide(request)

    def _deadline(self, request: Request) -> None:
        if not request.decided and not request.finished:
            self._decide(request)

    # -- decisions and bodies -------------------------------------------------

    def _decide(self, request: Request) -> None:
        request.decided = True
        worker = self.workers[request.worker]
        if self.guarded:
            runs, covered, why = ccs_decides(self, request, worker)
        else:
            runs, covered, why = talk_decides(self, request, worker)
        self.log(f"{request.label} decides {'run' if runs else 'skip'}: {why}")
        if runs:
            self._begin_body(request, worker, covered)
        else:
            request.marked = True
            exit_after = self.sc.dice("exit", request.label) * self.cond.exit_latency
            self.at(self.now + exit_after, self._end, request, "skip")

    def _begin_body(self, request: Request, worker: Worker,
                    covered: dict[str, list[float]]) -> None:
        t = self.now
        request.body_start = t
        if covered:
            worker.covers.append(CoverRecord(request, tuple(sorted(covered)), sent={
                i: list(when) for i, when in covered.items() if when}))
        duration = self.sc.duration(request.label)
        retry = self.cond.retries and self.first_run
        self.at(t + duration, self._end, request, "retry" if retry else "completed")
        if self.cond.redeliveries and self.first_run:
            self._redeliver_later(request, worker, duration)
        self.first_run = False

    def _redeliver_later(self, request: Request, worker: Worker, duration: float) -> None:
        """The broker delivers the running request's message again, onto the
        same worker or onto another (the original still running)."""
        dice = self.sc.dice
        again = Request(label=request.label + "/again", task_id=request.task_id,
                        sent=request.sent, stamp=request.stamp, worker=worker.index,
                        prefer_same=dice("again same?", request.label) < 0.5)
        if not again.prefer_same:
            others = [w.index for w in self.workers if w is not worker]
            again.worker = others[dice.pick(len(others), "again to", request.label)]
            again.prefer_same = True
        self.at(self.now + 0.9 * duration * dice("again at", request.label), self._deliver,
                again)

    def _end(self, request: Request, how: str) -> None:
        if request.finished:
            return
        worker = self.workers[request.worker]
        request.finished = True
        worker.held.remove(request)
        # as ``SingletonTask._ccs_run``: a body that returned has served what
        # it covered; a retry (any raise) has not, and drops its record
        for record in list(worker.covers):
            if record.request is request and how == "completed":
                record.ended_at = self.now
            elif record.request is request:
                worker.covers.remove(record)
        if request.body_start is not None:
            self.bodies.append(Body(request.label, request.sent, request.body_start,
                                    self.now, how))
        self.log(f"{request.label} ends ({how})")
        if how == "retry":
            self._send_retry(request, worker)
        assert request.pid is not None
        worker.free.append(request.pid)
        self._try_start(worker)

    def _send_retry(self, request: Request, worker: Worker) -> None:
        """``self.retry(countdown=...)``: the same id comes back later as a new
        request, with the original headers (and so the original stamp)."""
        dice, t = self.sc.dice, self.now
        retry = Request(label=request.label + "/retry", task_id=request.task_id, sent=t,
                        stamp=request.stamp, worker=-1,
                        eta_clock=worker.clock(t) + dice.uniform(*COUNTDOWN, "countdown"))
        self.at(t + dice.uniform(0.0, MAX_LAG, "lag", retry.label), self._deliver, retry)

    def _crash(self, worker: Worker) -> None:
        """Everything running on ``worker`` dies; what it held unstarted goes
        back to the broker and on to a survivor (early acknowledgement)."""
        t, dice = self.now, self.sc.dice
        worker.crashed = t
        self.log(f"{worker.name} crashes")
        for request in [*worker.held, *worker.scheduled]:
            request.finished = True
            if request.started is not None and (request.body_start is not None
                                                or not request.decided):
                self.killed.append(request.label)
                if request.body_start is not None:
                    self.bodies.append(Body(request.label, request.sent, request.body_start,
                                            t, "killed"))
            elif request.started is None:
                moved = Request(label=request.label + "/moved", task_id=request.task_id,
                                sent=request.sent, stamp=request.stamp, worker=-1,
                                eta_clock=request.eta_clock)
                self.at(t + dice.uniform(*REDELIVERY_LAG, "moved", request.label),
                        self._deliver, moved)
        worker.held.clear()
        worker.scheduled.clear()
        worker.covers.clear()
        worker.free.clear()


def play(scenario: Scenario, condition: Condition, rule: str,
         trace: list[str] | None = None) -> Outcome:
    """Replay one scenario under one rule."""
    return World(scenario, condition, rule, trace).play()


__all__ = ["KEY", "World", "play"]
