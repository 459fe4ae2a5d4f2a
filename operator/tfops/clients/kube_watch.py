"""List and watch the kinds a ModelServer owns, and its pods, into tfops.watched's
indexes: selected by label on the server's side and trimmed as each object is
read, so a full body (managedFields, a pod's whole spec) lives only while its one
line is parsed.

kopf watches only ModelServers. For the owned kinds it listed and watched every
object in the cluster (it filters labels on its side) and held full bodies in its
per-object queues until their workers ran: most of the operator's memory at
hundreds of fleets.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from tfops.owned import WATCHED_KINDS, OwnedKind
from tfops.watched import OWNED_SELECTOR, OwnedIndex, Stored

logger = logging.getLogger("tfops.watch")

# Objects per list page: a page is parsed whole before it is trimmed.
LIST_PAGE = 100
# The server ends each watch after this long (we then watch again from where it
# stopped); our read time-out is a little longer, so a stream that went silent
# (a proxy dropped it) is noticed.
WATCH_SECONDS = 300
READ_TIMEOUT_SECONDS = WATCH_SECONDS + 30
CONNECT_TIMEOUT_SECONDS = 30
# After a failed list or watch: 1 s, doubling to 30 s.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0

# Logged while the first lists have not all arrived, this often.
LIST_WAIT_LOG_SECONDS = 30.0

# (event type, object as sent, what the index kept of it before) for ADDED,
# MODIFIED and DELETED.
OnChange = Callable[[str, dict[str, Any], Stored | None], None]


class WatchFailed(Exception):
    """The API server refused a list or watch (the message says how)."""


class Expired(WatchFailed):
    """The resourceVersion to watch from is too old (HTTP 410): list again."""


def stream_lines(stream: Iterator[bytes]) -> Iterator[bytes]:
    """Newline-separated lines of a chunked stream."""
    pending = bytearray()
    for chunk in stream:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            if end > start:
                yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
    if pending.strip():
        yield bytes(pending)


@dataclass
class KindWatch:
    """One kind in one namespace (None: cluster-wide), on its own thread: list,
    then watch from the list's resourceVersion, resuming after each server-side
    time-out; a list again when the version has expired; retried with back-off
    when the API server does not answer. `listed` is set once the index holds a
    complete list."""

    api: client.ApiClient
    kind: OwnedKind
    namespace: str | None
    selector: str
    index: OwnedIndex
    on_change: OnChange | None = None
    page_size: int = LIST_PAGE
    listed: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def path(self) -> str:
        where = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{self.kind.api_prefix}{where}/{self.kind.plural}"

    def _get(self, query: list[tuple[str, str]], read_timeout: float) -> Any:
        request = self.api.param_serialize(
            method="GET",
            resource_path=self.path,
            query_params=[("labelSelector", self.selector), *query],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            *request, _request_timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout)
        )
        if response.status >= 400:
            text = response.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("message") or text
            except ValueError:
                message = text
            error = Expired if response.status == 410 else WatchFailed
            raise error(f"HTTP {response.status} for {self.path}: {str(message)[:300]}")
        return response

    def list_all(self) -> str:
        """Fill the index with a complete list; returns the list's resourceVersion."""
        fresh = OwnedIndex()
        token = ""
        while True:
            query = [("limit", str(self.page_size))] + ([("continue", token)] if token else [])
            page = json.loads(self._get(query, READ_TIMEOUT_SECONDS).read())
            for item in page.get("items") or []:
                # A list's items carry no kind: the indexes (and trim) read it.
                item["kind"], item["apiVersion"] = self.kind.kind, self.kind.api_version
                fresh.put(item)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                self.index.replace(fresh, self.namespace)
                return str(metadata.get("resourceVersion") or "")

    def watch_from(self, resource_version: str) -> str:
        """Apply the watch's events to the index until the server ends the stream;
        returns the last resourceVersion seen."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        response = self._get(query, READ_TIMEOUT_SECONDS)
        raw = response.response
        try:
            for line in stream_lines(raw.stream(64 * 1024)):
                if self.stopped.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    error = Expired if code == 410 else WatchFailed
                    raise error(f"watch of {self.path} ended: {obj.get('message') or obj}")
                resource_version = (obj.get("metadata") or {}).get(
                    "resourceVersion", resource_version
                )
                if kind == "BOOKMARK":
                    continue
                previous = self.index.stored((obj.get("metadata") or {}).get("uid", ""))
                if kind == "DELETED":
                    self.index.remove(obj)
                else:
                    self.index.put(obj)
                if self.on_change is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_change(kind, obj, previous)
        finally:
            # Closed, not pooled: a stream left mid-event would corrupt the next
            # request on its connection (one handshake per watch, every 5 min).
            raw.close()
            raw.release_conn()
        return resource_version

    def run(self) -> None:
        resource_version = ""
        delay = RETRY_FIRST_SECONDS
        while not self.stopped.is_set():
            try:
                if not resource_version:
                    resource_version = self.list_all()
                    self.listed.set()
                resource_version = self.watch_from(resource_version)
                delay = RETRY_FIRST_SECONDS
            except Expired as error:
                logger.info("Listing %s again: %s", self.path, error)
                resource_version = ""
            except Exception as error:  # the API server did not answer, or refused
                if self.stopped.is_set():
                    return  # stopped while waiting for an event: the stream's end is ours
                logger.warning("Watch of %s failed, retrying in %.0fs: %s", self.path, delay, error)
                self.stopped.wait(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"watch-{self.kind.plural}", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()


def start_watches(
    api: client.ApiClient,
    indexes: dict[str, OwnedIndex],
    namespaces: Sequence[str],
    on_change: Callable[[OwnedKind, str, dict[str, Any], Stored | None], None],
) -> list[KindWatch]:
    """Watch every owned kind and the pods, in each namespace (every namespace
    when none is given), into their indexes; returns once each has a complete
    list, so no reconcile judges a fleet from an index still filling (it would
    see none of its objects and create them all again)."""
    watches = [
        KindWatch(
            api,
            owned,
            namespace,
            OWNED_SELECTOR,
            indexes[owned.index],
            lambda event, obj, previous, owned=owned: on_change(owned, event, obj, previous),
        )
        for owned in WATCHED_KINDS
        for namespace in (list(namespaces) or [None])
    ]
    for watch in watches:
        watch.start()
    for watch in watches:
        while not watch.listed.wait(LIST_WAIT_LOG_SECONDS):
            logger.warning("Still waiting for the first list of %s", watch.path)
    return watches
