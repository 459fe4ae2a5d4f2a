"""Leader election on a coordination.k8s.io Lease, so two operator replicas can run
with one active (a node loss then costs one lease duration, not the operator).

The rules client-go's leader election follows, kept small:
- a Lease held by someone else is taken over only after its record has not
  changed for its whole duration, as measured on *our* clock from when we saw the
  change (so clocks that disagree between nodes do not matter);
- every write carries the resourceVersion we read: two standbys cannot both win;
- a leader that cannot renew for a lease duration stops the whole process. The
  kubelet restarts it as a standby; reconciling on after losing the lease could
  make two operators act at once.

The Lease is read and written through a LeaseStore (tfops.clients.kube.Leases on
a cluster), and time comes from injectable clocks, so the rules are unit-tested.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tfops.timefmt import micro_time

logger = logging.getLogger("tfops.leader")


class LeaseUnavailable(Exception):
    """The Lease could not be read or written (the API server did not answer, or
    refused for a reason other than a conflict)."""


class LeaseStore(Protocol):
    def read(self) -> dict[str, Any] | None:
        """The Lease, or None when there is none."""

    def create(self, lease: dict[str, Any]) -> bool:
        """False when someone else created it first."""

    def replace(self, lease: dict[str, Any]) -> bool:
        """False when someone else wrote it since we read it (resourceVersion)."""


@dataclass
class Observed:
    """The last Lease record we saw, and when (monotonic) we saw it change."""

    holder: str | None = None
    renew_time: Any = None
    seen_at: float = 0.0


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _exit_process() -> None:
    # Lost: stop at once, before another replica starts acting.
    logging.shutdown()
    os._exit(1)


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = _wall_clock,
        on_lost: Callable[[], None] = _exit_process,
    ) -> None:
        self.store = store
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.on_lost = on_lost
        self.observed = Observed()
        self.stopped = threading.Event()

    def _claim(self, lease: dict[str, Any] | None) -> dict[str, Any]:
        """The spec we write: ours, renewed now, counting a change of holder."""
        now = self.wall_clock()
        spec = (lease or {}).get("spec") or {}
        taking_over = lease is None or spec.get("holderIdentity") != self.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": micro_time(now)
            if taking_over
            else spec.get("acquireTime") or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions + 1
            if taking_over and lease is not None
            else transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards. Raises
        LeaseUnavailable when the store cannot answer."""
        lease = self.store.read()
        if lease is None:
            return self.store.create({"spec": self._claim(None)})
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"))
        if record != (self.observed.holder, self.observed.renew_time):
            self.observed = Observed(*record, seen_at=self.monotonic())
        held_by_other = spec.get("holderIdentity") not in (None, "", self.identity)
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if held_by_other and self.monotonic() - self.observed.seen_at < duration:
            return False
        resource_version = (lease.get("metadata") or {}).get("resourceVersion")
        return self.store.replace(
            {"metadata": {"resourceVersion": resource_version}, "spec": self._claim(lease)}
        )

    def acquire(self) -> None:
        """Block until we hold the lease."""
        logger.info("Waiting to lead as %s", self.identity)
        while not self.stopped.is_set():
            try:
                if self.try_acquire_or_renew():
                    logger.info("Leading as %s", self.identity)
                    return
            except LeaseUnavailable as error:
                logger.warning("Could not reach the Lease: %s", error)
            self.stopped.wait(self.renew_seconds)

    def renew(self, last_renewed: float) -> float | None:
        """One renewal: when we last held the lease, or None once it is lost
        (taken by another replica, or not renewed for a whole lease duration)."""
        try:
            if self.try_acquire_or_renew():
                return self.monotonic()
            logger.error("Another replica took the Lease: stopping")
            return None
        except LeaseUnavailable as error:
            if self.monotonic() - last_renewed < self.lease_seconds:
                logger.warning("Could not renew the Lease (retrying): %s", error)
                return last_renewed
            logger.error("Could not renew the Lease for %ss: stopping", self.lease_seconds)
            return None

    def keep_renewing(self) -> threading.Thread:
        """Renew in the background; stop the process once leadership is lost."""

        def run() -> None:
            last_renewed: float | None = self.monotonic()
            while not self.stopped.wait(self.renew_seconds):
                last_renewed = self.renew(last_renewed)  # type: ignore[arg-type]
                if last_renewed is None:
                    self.on_lost()
                    return

        thread = threading.Thread(target=run, name="leader-renew", daemon=True)
        thread.start()
        return thread
