"""Everything the operator process keeps between handler calls, in one object.

kopf hands it to every handler as `memo` (a shallow copy per object, so the
containers below are shared); the loops and sinks get it explicitly. Nothing of
this lives in module globals, so tests build their own.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfops.clients.events import Event, EventSender
from tfops.config import OperatorConfig
from tfops.health import ApiHealth
from tfops.memory.watch import FleetWatch
from tfops.owned import WATCHED_KINDS
from tfops.watched import Key, OwnedIndex


@dataclass
class Remembered:
    """Something we wrote, when (monotonic), and the resourceVersion it got: the
    watch-fed index can lag behind our own write, and judging from a stale copy
    would write again."""

    at: float
    body: dict[str, Any]
    resource_version: int = 0


@dataclass
class Backoff:
    """A ModelServer whose last reconcile failed, and when to try again."""

    generation: int
    attempts: int
    retry_at: float  # monotonic


@dataclass
class OperatorState:
    config: OperatorConfig = field(default_factory=OperatorConfig)
    health: ApiHealth = field(default_factory=ApiHealth)
    # The process's one API client, created on first use (see api()); a list so the
    # per-object shallow copies kopf makes of its memo share it once created.
    client: list[Any] = field(default_factory=list)
    # One reconcile at a time per ModelServer.
    locks: dict[Key, threading.Lock] = field(default_factory=dict)
    locks_guard: threading.Lock = field(default_factory=threading.Lock)
    # What our own last apply returned, per (namespace, kind, name).
    last_applied: dict[tuple[str, str, str], Remembered] = field(default_factory=dict)
    # What each fleet's models.config serves, and since when (monotonic): a pod not
    # serving it long after is reported (ConfigNotApplied).
    configs_seen: dict[Key, tuple[frozenset[Any], float]] = field(default_factory=dict)
    # Pods found not serving it, with what differs (the config watchdog's restarts).
    config_lagging: dict[Key, dict[str, list[str]]] = field(default_factory=dict)
    # Pods loading a model (or about to, or in a promotion step), by fleet: the
    # memory guard does not take their growth for a leak.
    loading: dict[Key, frozenset[str]] = field(default_factory=dict)
    # When stale entries were last dropped from both (monotonic).
    forgotten_at: float = 0.0
    # The status we last wrote, per ModelServer.
    written_status: dict[Key, Remembered] = field(default_factory=dict)
    backoffs: dict[Key, Backoff] = field(default_factory=dict)
    # What the memory guard knows of each ModelServer: written by its loop, read
    # by the status computation.
    fleets: dict[Key, FleetWatch] = field(default_factory=dict)
    # Each fleet's pods' last model-state answers, and when (monotonic).
    answers: dict[Key, dict[str, tuple[Any, float]]] = field(default_factory=dict)
    # Guard restarts (leaks, config not applied) whose fleets are not ready again,
    # operator-wide (epoch seconds).
    leak_restarts_in_flight: dict[Key, float] = field(default_factory=dict)
    # Each ModelServer's parsed spec and plan, by (uid, generation): every resync,
    # Deployment event and guard round needs them, and the spec changes only with
    # a new generation.
    plans: dict[Key, tuple[tuple[str, int], Any, Any]] = field(default_factory=dict)
    apply_pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="apply"
        )
    )
    # Where pods' TF Serving is asked for model states, all of a fleet's at once;
    # twice the resync's width (64 fleets), so the asks of half of them run at once
    # and a dead pod's time-out holds one thread, not the pool.
    status_pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            max_workers=128, thread_name_prefix="model-status"
        )
    )
    # Every owned object and serving pod, by kind's index name and owner: filled by
    # our own watches (tfops.clients.kube_watch), read by every reconcile.
    watched: dict[str, OwnedIndex] = field(
        default_factory=lambda: {owned.index: OwnedIndex() for owned in WATCHED_KINDS}
    )
    # Queues a ModelServer for a pass soon (the resync's request), once the loops
    # run; a list so kopf's per-object copies of this memo share it.
    reconcile_soon: list[Callable[[Key, str], None]] = field(default_factory=list)
    # Background loops to stop at shutdown (the resync, the memory guard).
    loops: list[Any] = field(default_factory=list)
    # Where every Event on a ModelServer goes: posted off the reconcile's thread.
    events: EventSender = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventSender(self._post_event)

    def _post_event(self, event: Event) -> None:
        from tfops.clients import kube

        kube.post_event(
            self.api(),
            event.body,
            kind=event.kind,
            reason=event.reason,
            message=event.message,
            at=event.at,
        )

    def forget_deleted(self, present: set[Key]) -> None:
        """Drop what the process keeps per ModelServer for those not `present` any
        more: with fleets created and deleted all day, nothing may grow with the
        fleets ever seen. A lock still held stays until its pass ends."""
        for memory in (
            self.fleets,
            self.plans,
            self.configs_seen,
            self.config_lagging,
            self.loading,
            self.answers,
            self.written_status,
            self.backoffs,
        ):
            for gone in set(memory) - present:
                memory.pop(gone, None)  # type: ignore[attr-defined]
        with self.locks_guard:
            for gone in set(self.locks) - present:
                if not self.locks[gone].locked():
                    del self.locks[gone]

    def lock(self, key: Key) -> threading.Lock:
        with self.locks_guard:
            return self.locks.setdefault(key, threading.Lock())

    def api(self) -> Any:
        """The process's one Kubernetes API client."""
        with self.locks_guard:
            if not self.client:
                from tfops.clients import kube

                self.client.append(kube.api_client())
            return self.client[0]
