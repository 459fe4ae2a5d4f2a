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
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tfops.timefmt import micro_time

logger = logging.getLogger("tfops.leader")


@dataclass
class Observed:
    """The last Lease record we saw, and when (monotonic) we saw it change."""

    holder: str | None = None
    renew_time: Any = None
    seen_at: float = 0.0


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.observed = Observed()
        self.stopped = threading.Event()

    def _spec(self, lease: client.V1Lease | None, now: datetime.datetime) -> dict[str, Any]:
        spec = lease.spec if lease is not None else None
        taking_over = spec is None or spec.holder_identity != self.identity
        transitions = int((spec.lease_transitions if spec else 0) or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": micro_time(now) if taking_over else micro_time(spec.acquire_time or now),  # type: ignore[union-attr]
            "renewTime": micro_time(now),
            "leaseTransitions": transitions + 1
            if taking_over and spec is not None
            else transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards."""
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, now),
            }
            try:
                self.leases.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time)
        if record != (self.observed.holder, self.observed.renew_time):
            self.observed = Observed(*record, seen_at=time.monotonic())
        held_by_other = spec.holder_identity not in (None, "", self.identity)
        duration = int(spec.lease_duration_seconds or self.lease_seconds)
        if held_by_other and time.monotonic() - self.observed.seen_at < duration:
            return False
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
            "spec": self._spec(lease, now),
        }
        try:
            self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            if error.status == 409:  # someone else wrote first
                return False
            raise
        return True

    def acquire(self) -> None:
        """Block until we hold the lease."""
        logger.info("Waiting to lead: Lease %s/%s as %s", self.namespace, self.name, self.identity)
        while not self.stopped.is_set():
            try:
                if self.try_acquire_or_renew():
                    logger.info("Leading: holding Lease %s/%s", self.namespace, self.name)
                    return
            except (ApiException, OSError) as error:
                logger.warning("Could not reach the Lease: %s", error)
            self.stopped.wait(self.renew_seconds)

    def keep_renewing(self) -> threading.Thread:
        """Renew in the background; exit the process once leadership is lost."""

        def renew() -> None:
            last_renewed = time.monotonic()
            while not self.stopped.wait(self.renew_seconds):
                try:
                    if self.try_acquire_or_renew():
                        last_renewed = time.monotonic()
                        continue
                    logger.error("Another replica took the Lease: stopping")
                except (ApiException, OSError) as error:
                    if time.monotonic() - last_renewed < self.lease_seconds:
                        logger.warning("Could not renew the Lease (retrying): %s", error)
                        continue
                    logger.error("Could not renew the Lease for %ss: stopping", self.lease_seconds)
                # Lost: stop at once, before another replica starts acting.
                logging.shutdown()
                os._exit(1)

        thread = threading.Thread(target=renew, name="leader-renew", daemon=True)
        thread.start()
        return thread
