"""Re-observe every ModelServer on a fixed period: drift, model states, status.

Our own loop rather than a kopf timer: kopf puts a finalizer on every object with
a timer, which costs a write per object and blocks deleting a ModelServer
whenever the operator is down.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

from tfops import reconcile
from tfops.clients import kube
from tfops.state import OperatorState


class Resyncer:
    def __init__(self, state: OperatorState, indexes: reconcile.Indexes) -> None:
        self.state = state
        self.indexes = indexes
        self.period = state.config.resync_seconds
        self.stopped = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="resync")
        self.thread = threading.Thread(target=self.run, name="resync", daemon=True)
        self.logger = logging.getLogger("tfops.resync")

    def resync_one(self, body: dict[str, Any]) -> None:
        try:
            reconcile.reconcile(
                self.state,
                body,
                kube.ApiSink(self.state.api(), body),
                self.logger,
                indexes=self.indexes,
                trigger="resync",
            )
        except Exception:  # reconcile reports its own failures; this is a last resort
            meta = body.get("metadata", {})
            self.logger.exception("Failed to resync %s/%s", meta.get("namespace"), meta.get("name"))

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            bodies = reconcile.snapshot(self.indexes, reconcile.MODELSERVER_INDEX)
            list(self.pool.map(self.resync_one, bodies))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
