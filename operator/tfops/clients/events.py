"""Events on ModelServers, posted off the reconcile's thread.

An Event is a record for `kubectl describe`, not a step of the reconcile: a pass
that waited a round trip for it (one per creation, one per Ready) held its worker
that long while a creation burst queued behind it. client-go's recorder is
asynchronous for the same reason. Bounded: when the API server falls far behind,
new Events are dropped and counted (tfops_events_dropped_total), never the
reconciles that made them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from tfops import metrics
from tfops.timefmt import now_iso

logger = logging.getLogger("tfops.events")

# Events waiting to be posted at most: a thousand fleets' creation and Ready.
BACKLOG = 2000
SENDERS = 2


@dataclass(frozen=True)
class Event:
    body: dict[str, Any]  # the ModelServer it is about (metadata is read)
    kind: str  # Normal or Warning
    reason: str
    message: str
    at: str  # when it happened (RFC 3339): the time it is posted can be later


class EventSender:
    """Posts queued Events with `post` (the API server's, in tfops.state) from
    a few threads of its own, started on the first Event."""

    def __init__(self, post: Callable[[Event], None], backlog: int = BACKLOG) -> None:
        self._post = post
        self._queue: queue.Queue[Event] = queue.Queue(backlog)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._dropped = 0

    def send(self, body: dict[str, Any], *, kind: str, reason: str, message: str) -> None:
        self._start()
        # Only what the Event names: a queue of whole ModelServers (their status
        # included) would hold megabytes through a burst.
        meta = body.get("metadata") or {}
        about = {"metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta}}
        try:
            self._queue.put_nowait(Event(about, kind, reason, message, now_iso()))
        except queue.Full:
            metrics.EVENTS_DROPPED.inc()
            self._dropped += 1
            if self._dropped % 100 == 1:  # the first, then every hundredth: not a flood
                logger.warning(
                    "Event backlog full: dropped %d so far, now %s: %s",
                    self._dropped,
                    reason,
                    message,
                )

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event was posted (or failed); False on time-out."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._threads = [
                threading.Thread(target=self._run, name=f"events-{i}", daemon=True)
                for i in range(SENDERS)
            ]
            for thread in self._threads:
                thread.start()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            meta = event.body.get("metadata", {})
            try:
                self._post(event)
            except (ApiException, OSError, urllib3.exceptions.HTTPError) as error:
                logger.warning(
                    "Could not post the %s Event on %s/%s: %s",
                    event.reason,
                    meta.get("namespace"),
                    meta.get("name"),
                    error,
                )
            except Exception:  # a bug: logged, and the sender keeps going
                logger.exception("Failed to post the %s Event", event.reason)
            finally:
                self._queue.task_done()
