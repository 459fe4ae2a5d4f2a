"""Re-observe every ModelServer on a fixed period (drift, model states, status),
and one at once when the watches see its Deployment change or a pod wait for its
readiness gate.

Our own loop rather than a kopf timer: kopf puts a finalizer on every object with
a timer, which costs a write per object and blocks deleting a ModelServer
whenever the operator is down.

Cycles start on a fixed cadence (period after the previous start, not after its
end), so a cycle's cost shows as lag (tfops_resync_lag_seconds) instead of
silently stretching the period. A cycle waits, at most one period, while more
watch-triggered passes are queued than there are workers to run them. Fleets are
re-observed by a pool wide enough that a fleet waiting on a slow or dead pod's
time-out holds one worker, not the cycle.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import math
import queue
import threading
import time
from typing import Any

from tfops import metrics, reconcile, watched
from tfops.clients import kube
from tfops.state import OperatorState

# Fleets re-observed at once. Most of a resync is waiting (API reads, pods' REST
# answers, time-outs of dead pods), so more workers than cores pays: at 1000 fleets
# with 2% of pods silent and 2% slow, half the workers' time was spent waiting on
# those, and 32 workers made a cycle as long as the 10 s period.
RESYNC_WORKERS = 64
# Fleets reconciled at once because a watch saw something change (a ModelServer
# created or changed, a Deployment's rollout, a pod awaiting its gate): a creation
# burst of a thousand fleets goes through these.
EVENT_WORKERS = 16
# Which queued pass goes first (lower first): a pod waiting for its readiness gate
# takes no traffic until judged; a rollout's progress and a changed spec are what
# users wait on; a new fleet has nothing running yet. First come, first served held
# every created fleet's Ready behind the rest of a creation burst: 169 s into
# creating 1000 fleets at once, 765 had every pod ready and 79 were reported Ready.
URGENCY = {"pod": 0, "deployment": 1, "update": 1, "create": 2}
# How often a held-back cycle looks at the queue again.
HELD_BACK_POLL_SECONDS = 0.5


def held_back(waiting: int, workers: int, now: float, due: float, period: float) -> bool:
    """Whether a resync cycle due at `due` waits for the watch-triggered passes
    queued before it: while more wait than the `workers` that run them (a creation
    burst, a mass rollout), for at most one period. Cycles re-read every settled
    fleet, and during a burst they spent the CPU the burst needed: at 1000 fleets
    created at once, the longer the creation, the more cycles ran in it. Even so
    every fleet is re-observed at least every two periods."""
    return waiting > workers and now < due + period


def next_start(previous_start: float, period: float, now: float) -> tuple[float, float]:
    """When the next cycle starts and how late that is: one period after the
    previous start, or now when the previous cycle overran (no catch-up burst)."""
    scheduled = previous_start + period
    return max(scheduled, now), max(0.0, now - scheduled)


class Resyncer:
    def __init__(
        self, state: OperatorState, indexes: watched.Indexes, workers: int = EVENT_WORKERS
    ) -> None:
        self.state = state
        self.indexes = indexes
        self.period = state.config.resync_seconds
        self.stopped = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(
            RESYNC_WORKERS, thread_name_prefix="resync"
        )
        # Watch-requested passes, most urgent first: (urgency, order, key, trigger).
        self.queue: queue.PriorityQueue[tuple[int, int, watched.Key, str]] = queue.PriorityQueue()
        self.order = itertools.count()
        self.workers = [
            threading.Thread(target=self._work, name=f"on-change-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self.workers:
            worker.start()
        # Fleets with a pass running or queued, and those asked for again meanwhile
        # (with the latest trigger): a rollout sends an event per pod and status
        # change, and one more pass after the current one sees them all.
        self.busy: set[watched.Key] = set()
        self.again: dict[watched.Key, str] = {}
        # When each fleet's last pass on a watch's request started (monotonic).
        self.passed: dict[watched.Key, float] = {}
        self.busy_lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name="resync", daemon=True)
        self.logger = logging.getLogger("tfops.resync")

    def resync_one(self, body: dict[str, Any], trigger: str = "resync") -> None:
        try:
            reconcile.reconcile(
                self.state,
                body,
                kube.ApiSink(self.state.api(), body, self.state.events),
                self.logger,
                indexes=self.indexes,
                trigger=trigger,
            )
        except Exception:  # reconcile reports its own failures; this is a last resort
            meta = body.get("metadata", {})
            self.logger.exception("Failed to resync %s/%s", meta.get("namespace"), meta.get("name"))

    def request(self, key: watched.Key, trigger: str) -> None:
        """Re-observe one ModelServer soon, off the caller's (a watch's) thread. At
        most one pass per fleet runs and one more follows it, however many
        requests arrive meanwhile."""
        with self.busy_lock:
            if key in self.busy:
                self.again[key] = trigger
                return
            self.busy.add(key)
        self.queue.put((URGENCY.get(trigger, 1), next(self.order), key, trigger))

    def _work(self) -> None:
        while not self.stopped.is_set():
            _, _, key, trigger = self.queue.get()
            try:
                if not self.stopped.is_set():
                    self._passes(key, trigger)
            finally:
                self.queue.task_done()

    def _passes(self, key: watched.Key, trigger: str | None) -> None:
        while trigger is not None:
            if trigger != "resync":
                with self.busy_lock:
                    self.passed[key] = time.monotonic()
            bodies = watched.lookup(self.indexes, watched.MODELSERVER_INDEX, key)
            if bodies:
                self.resync_one(bodies[0], trigger)
            with self.busy_lock:
                trigger = self.again.pop(key, None)
                if trigger is None:
                    self.busy.discard(key)

    def cycle(self) -> None:
        started = time.monotonic()
        keys = watched.owners(self.indexes, watched.MODELSERVER_INDEX)
        with self.busy_lock:  # fleets deleted since: forgotten
            self.passed = {key: self.passed[key] for key in keys if key in self.passed}
        # Each worker reads its fleet's body when it starts: not every body at once.
        list(self.pool.map(self._resync_key, keys))
        metrics.RESYNC_CYCLE_SECONDS.observe(time.monotonic() - started)
        metrics.RESYNC_FLEETS.set(len(keys))

    def _resync_key(self, key: watched.Key) -> None:
        """One fleet's pass in the cycle, unless one is running or queued already
        (it re-observes the fleet as well; two would only wait on the fleet's lock)
        or has just been."""
        with self.busy_lock:
            if key in self.busy or self.recently_passed(key, time.monotonic()):
                return
            self.busy.add(key)
        self._passes(key, "resync")

    def recently_passed(self, key: watched.Key, now: float) -> bool:
        """Whether a pass a watch asked for started within the last half period:
        while fleets are created or roll, their own events re-observe them, and a
        resync pass on top only doubled the asks and reads. A fleet is skipped only
        after such a pass, so none goes unobserved for more than about one and a
        half periods; an idle fleet is re-observed every cycle."""
        return now - self.passed.get(key, -math.inf) < self.period / 2

    def run(self) -> None:
        start = time.monotonic() + self.period
        while not self.stopped.wait(max(0.0, start - time.monotonic())):
            while held_back(
                self.queue.qsize(), len(self.workers), time.monotonic(), start, self.period
            ):
                if self.stopped.wait(HELD_BACK_POLL_SECONDS):
                    return
            self.cycle()
            start_after, lag = next_start(start, self.period, time.monotonic())
            metrics.RESYNC_LAG.set(lag)
            start = start_after

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for _ in self.workers:  # wakes each worker: it sees `stopped` and ends
            self.queue.put((-1, next(self.order), ("", ""), "stop"))
