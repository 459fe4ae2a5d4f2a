"""What the watches hold: every owned object and serving pod, trimmed to what
tfops reads and kept serialized, by the ModelServer that owns it; and the lookups
every reconcile, resync and guard round makes on them. Pure: the watches that
feed these indexes are in tfops.clients.kube_watch (owned kinds and pods) and
kopf (ModelServers)."""

from __future__ import annotations

import json
import marshal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from tfops import readiness
from tfops.owned import BY_KIND, PODS
from tfops.render.common import MANAGED_BY, OWNER_LABEL
from tfops.status import rollout_view

Key = tuple[str, str]  # (namespace, ModelServer name)

# What the API server sends the watches of owned kinds and pods: only what tfops
# made (every rendered object and the pods' template carry both labels).
OWNED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},{OWNER_LABEL}"

# Index name -> index: kopf's of ModelServers, and ours (OwnedIndex) of the rest.
Indexes = Mapping[str, Any]
# The kopf index of ModelServers themselves, by (namespace, name).
MODELSERVER_INDEX = "tfops_modelservers"


def trim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object tfops reads: the indexes keep only these. Of a
    pod's spec, only what is read (the memory limit, the readiness gates): the rest
    (args, probes, volumes) was most of each pod's bytes."""
    meta = body.get("metadata", {})
    kept: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: meta[key]
            for key in (
                "name",
                "namespace",
                "uid",
                "generation",
                "resourceVersion",
                "labels",
                "annotations",
                "ownerReferences",
                "creationTimestamp",
                "deletionTimestamp",
            )
            if key in meta
        },
    }
    for key in ("spec", "data", "status"):
        if key in body:
            kept[key] = dict(body[key])
    if body.get("kind") == "Pod" and "spec" in kept:
        pod_spec = kept["spec"]
        kept["spec"] = {
            "containers": [
                {"name": c.get("name"), "resources": c.get("resources") or {}}
                for c in pod_spec.get("containers") or []
            ],
            **{k: pod_spec[k] for k in ("nodeName", "readinessGates") if k in pod_spec},
        }
    return kept


class Stored:
    """One object as an index keeps it: the trimmed body serialized (marshal: the
    fastest to read back of json, pickle and marshal, and the smallest), read back
    on lookup. A parsed pod costs about five times its bytes in Python objects, and
    the indexes hold every owned object and pod of every fleet; each lookup gets
    its own copy, so no caller can change what the index holds."""

    __slots__ = ("data",)

    def __init__(self, body: Mapping[str, Any]) -> None:
        trimmed = trim(body)
        try:
            self.data = marshal.dumps(trimmed)
        except ValueError:  # a mapping that is not a dict somewhere: JSON's types
            self.data = marshal.dumps(json.loads(json.dumps(trimmed)))

    def body(self) -> dict[str, Any]:
        loaded: dict[str, Any] = marshal.loads(self.data)
        return loaded


def owner_key(namespace: str | None, labels: Mapping[str, str]) -> Key | None:
    owner = labels.get(OWNER_LABEL)
    return (namespace, owner) if namespace and owner else None


def lookup(indexes: Indexes, index: str, key: Key) -> list[dict[str, Any]]:
    """What an index holds for one ModelServer, as bodies of our own."""
    store = indexes[index].get(key)
    return [stored.body() for stored in list(store)] if store is not None else []


def owners(indexes: Indexes, index: str) -> list[Key]:
    """The keys of one index, copied while the watches may be changing it."""
    store = indexes[index]
    for _attempt in range(3):
        try:
            return list(store)
        except RuntimeError:  # the index changed while we copied it
            continue
    return []


def each_body(indexes: Indexes, index: str) -> Iterator[dict[str, Any]]:
    """Every object of one index, read back one at a time as the caller goes: at
    1000 fleets, every ModelServer's body at once (with its status) was tens of MB
    held through a whole resync cycle or guard round."""
    for key in owners(indexes, index):
        yield from lookup(indexes, index, key)


def change_trigger(
    kind: str, event: str, body: Mapping[str, Any], previous: Stored | None
) -> str | None:
    """Why a watched object's change should have its ModelServer re-observed now
    rather than at the next resync, or None: a Deployment deleted (or no longer
    ours) or changed in what the status reads (its spec's generation, its
    rollout's counts), or a serving pod's TF Serving came up and its readiness gate
    was never set (until judged it takes no traffic). A new Deployment is the echo
    of the pass that created it, and a change elsewhere (the controller's
    conditions and available counts, a label) waits for the resync: the controller
    writes a new fleet's Deployment status about seven times."""
    if kind == "Deployment":
        if event == "DELETED":
            return "deployment"
        if event == "ADDED":
            return None
        if previous is not None and rollout_view(previous.body()) == rollout_view(body):
            return None
        return "deployment"
    if kind == "Pod" and readiness.awaits_gate(body):
        return "pod"
    return None


def modelserver_trigger(event_type: str | None, body: Mapping[str, Any]) -> str | None:
    """Why a ModelServer's watch event should have it reconciled now, or None: a
    spec generation not yet observed in status ("create" for one never observed,
    "update" for a changed spec), also when listed as kopf's watch (re)starts.
    Everything else (our own status writes, edits of metadata, the listing of
    observed ModelServers after a restart or an expired watch) waits for the
    resync, which re-observes every fleet within a period anyway: a relist of a
    thousand fleets queued at once would only double one cycle's work."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        return None
    observed = status.get("observedGeneration")
    if observed is not None and observed == meta.get("generation"):
        return None
    return "create" if observed is None else "update"


def owned_pods(indexes: Indexes, namespace: str, name: str) -> list[dict[str, Any]]:
    return lookup(indexes, PODS.index, (namespace, name))


def owned_deployment(indexes: Indexes, namespace: str, name: str) -> dict[str, Any] | None:
    found = lookup(indexes, BY_KIND["Deployment"].index, (namespace, name))
    return found[0] if found else None


class OwnedIndex:
    """One watched kind's objects by owning ModelServer. Filled by one watch thread
    per namespace (or one cluster-wide) while resync, handler and guard threads
    read it: every access holds the lock, and readers get copies.

    Reads as kopf's indexes do (`get(key)` -> the stored objects, iteration over
    keys), so the lookups above serve both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[Key, dict[str, Stored]] = {}
        self._owner_of: dict[str, Key] = {}  # uid -> owner

    def put(self, body: Mapping[str, Any]) -> Key | None:
        """Keep (or replace) one object; returns its owner, None when it names none."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        key = owner_key(meta.get("namespace"), meta.get("labels") or {})
        stored = Stored(body) if uid and key else None
        with self._lock:
            if uid:
                self._forget(uid)
            if uid and key and stored is not None:
                self._by_owner.setdefault(key, {})[uid] = stored
                self._owner_of[uid] = key
        return key

    def remove(self, body: Mapping[str, Any]) -> Key | None:
        """Forget one deleted object; returns the owner it had."""
        uid = (body.get("metadata") or {}).get("uid")
        with self._lock:
            return self._forget(uid) if uid else None

    def replace(self, fresh: OwnedIndex, namespace: str | None) -> None:
        """A fresh list of one namespace (None: every namespace) takes the place of
        what was kept of it: objects deleted while no watch ran go too."""
        with self._lock:
            for uid, key in list(self._owner_of.items()):
                if namespace is None or key[0] == namespace:
                    self._forget(uid)
            for key, objects in fresh._by_owner.items():
                self._by_owner.setdefault(key, {}).update(objects)
            self._owner_of.update(fresh._owner_of)

    def _forget(self, uid: str) -> Key | None:
        key = self._owner_of.pop(uid, None)
        if key is not None:
            objects = self._by_owner.get(key, {})
            objects.pop(uid, None)
            if not objects:
                self._by_owner.pop(key, None)
        return key

    def stored(self, uid: str) -> Stored | None:
        """One object as kept now, by uid (None when not kept)."""
        with self._lock:
            key = self._owner_of.get(uid)
            return self._by_owner.get(key, {}).get(uid) if key else None

    def get(self, key: Key) -> list[Stored] | None:
        with self._lock:
            objects = self._by_owner.get(key)
            return list(objects.values()) if objects else None

    def __iter__(self) -> Iterator[Key]:
        with self._lock:
            return iter(list(self._by_owner))

    def __len__(self) -> int:
        with self._lock:
            return len(self._owner_of)
