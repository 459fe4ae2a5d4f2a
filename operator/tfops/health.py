"""Whether the operator can do its job right now, for its readiness probe.

The API server is the one thing the operator cannot work without. Its calls are
retried with back-off where they fail (kopf's watches, each ModelServer's
reconcile, the reachability check below); this records the outcome so a probe
and a human can see an operator that is retrying rather than working.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


class ApiHealth:
    """Consecutive failures to reach the API server. Not ready once they have gone
    on for `unready_after_seconds`: one lost request is not an outage."""

    def __init__(self, unready_after_seconds: float = 30.0) -> None:
        self.unready_after_seconds = unready_after_seconds
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._last_error = ""
        self._reached = False

    def succeeded(self) -> None:
        with self._lock:
            self._failing_since = None
            self._last_error = ""
            self._reached = True

    def failed(self, now: float, error: str) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = now
            self._last_error = error

    def readiness(self, now: float) -> Readiness:
        with self._lock:
            if not self._reached and self._failing_since is None:
                return Readiness(False, "the API server has not been reached yet")
            if self._failing_since is None:
                return Readiness(True, "the API server answers")
            failing = now - self._failing_since
            if failing < self.unready_after_seconds:
                return Readiness(True, f"retrying the API server for {failing:.0f}s")
            return Readiness(
                False,
                f"the API server has not answered for {failing:.0f}s "
                f"(last error: {self._last_error}); tfops keeps retrying",
            )
