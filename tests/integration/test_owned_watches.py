"""Our own list and watch of owned kinds, against the real API server: only what
tfops labelled arrives, a list comes in pages, and changes and deletions follow."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client

from tfops.clients.kube_watch import KindWatch
from tfops.owned import BY_KIND
from tfops.render.common import MANAGED_BY, OWNER_LABEL
from tfops.testing.support import wait_for
from tfops.watched import OWNED_SELECTOR, OwnedIndex, Stored


def _config_map(name: str, owner: str | None, data: str = "1") -> client.V1ConfigMap:
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY}
    if owner:
        labels[OWNER_LABEL] = owner
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels), data={"value": data}
    )


def _names(index: OwnedIndex, key: tuple[str, str]) -> list[str]:
    return sorted(stored.body()["metadata"]["name"] for stored in index.get(key) or [])


def test_a_watch_lists_in_pages_then_follows_only_labelled_objects(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        core.create_namespaced_config_map(namespace, _config_map(f"listed-{i}", "search"))
    core.create_namespaced_config_map(namespace, _config_map("no-owner", None))
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="not-ours"))
    )
    events: list[tuple[str, str]] = []
    # What the index held of each object just before its event (None: nothing).
    before: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def on_change(event: str, obj: dict[str, Any], previous: Stored | None) -> None:
        name = obj["metadata"]["name"]
        with lock:
            events.append((event, name))
            before[(event, name)] = previous.body()["data"] if previous else None

    index = OwnedIndex()
    watch = KindWatch(
        api, BY_KIND["ConfigMap"], namespace, OWNED_SELECTOR, index, on_change, page_size=2
    )
    watch.start()
    try:
        assert watch.listed.wait(30), "the first list did not arrive"
        key = (namespace, "search")
        assert _names(index, key) == [f"listed-{i}" for i in range(5)]
        assert len(index) == 5  # neither the unowned nor the unlabelled one
        listed = index.get(key) or []
        assert all(s.body()["kind"] == "ConfigMap" for s in listed)

        core.create_namespaced_config_map(namespace, _config_map("added", "search"))
        core.patch_namespaced_config_map("listed-0", namespace, {"data": {"value": "2"}})
        core.delete_namespaced_config_map("listed-1", namespace)
        wait_for(
            lambda: "listed-1" not in _names(index, key) and "added" in _names(index, key),
            timeout=30,
            what="the watch to add one ConfigMap and drop another",
        )
        patched = [
            s.body() for s in index.get(key) or [] if s.body()["metadata"]["name"] == "listed-0"
        ]
        assert patched[0]["data"] == {"value": "2"}
        assert "managedFields" not in patched[0]["metadata"]
        with lock:
            assert ("ADDED", "added") in events
            assert ("MODIFIED", "listed-0") in events
            assert ("DELETED", "listed-1") in events
            assert before[("ADDED", "added")] is None
            assert before[("MODIFIED", "listed-0")] == {"value": "1"}  # the listed copy
            assert before[("DELETED", "listed-1")] == {"value": "1"}
            assert not any(name in ("no-owner", "not-ours") for _, name in events)
    finally:
        watch.stop()
