"""kopf's registrations for ModelServers: their index, the event handler that
queues them for reconciling, and the start and stop of the loops (the watches of
what ModelServers own, the resync, the memory guard). The logic is in
tfops.reconcile; this module only wires it to kopf, which watches ModelServers
and nothing else."""

from __future__ import annotations

import collections
from typing import Any

import kopf

from tfops import guard_loop, watched
from tfops.clients import kube_watch
from tfops.model import GROUP, PLURAL, VERSION
from tfops.owned import OwnedKind
from tfops.resync import Resyncer
from tfops.state import OperatorState

kopf.index(GROUP, VERSION, PLURAL, id=watched.MODELSERVER_INDEX)(
    lambda body, namespace, name, **_: {(namespace, name): watched.Stored(body)}
)


def _indexes(memo: OperatorState, kopf_kwargs: dict[str, Any]) -> watched.Indexes:
    """Our watches' indexes, and kopf's (handed to handlers as keyword arguments)."""
    return collections.ChainMap(memo.watched, kopf_kwargs)


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_modelserver_event(type: str | None, body: kopf.Body, memo: OperatorState, **_: Any) -> None:
    """Queue a ModelServer whose spec is not observed yet (created or changed)
    for a pass on the resync's workers. Not a kopf create or
    update handler: those write kopf's own state into every object (one more write
    per change) and run each reconcile on kopf's workers, where a fleet the resync
    was reconciling held one blocked for the fleet's lock."""
    meta = body.get("metadata") or {}
    trigger = watched.modelserver_trigger(type, body)
    if trigger and memo.reconcile_soon:
        memo.reconcile_soon[0]((meta.get("namespace", ""), meta.get("name", "")), trigger)


@kopf.on.startup()
def start_loops(memo: OperatorState, **kwargs: Any) -> None:
    """The watches of owned objects and pods (complete before kopf's first
    ModelServer handler runs: startup handlers run first), the resync loop and the
    memory guard. kopf hands startup handlers the same index objects it keeps
    filling."""
    if memo.loops:  # started already (kopf retried this handler)
        return
    indexes = _indexes(memo, kwargs)
    resyncer = Resyncer(memo, indexes)

    def on_change(
        owned: OwnedKind, event: str, obj: dict[str, Any], previous: watched.Stored | None
    ) -> None:
        meta = obj.get("metadata") or {}
        key = watched.owner_key(meta.get("namespace"), meta.get("labels") or {})
        trigger = watched.change_trigger(owned.kind, event, obj, previous)
        if key and trigger:
            resyncer.request(key, trigger)

    memo.loops.extend(
        kube_watch.start_watches(memo.api(), memo.watched, memo.config.namespaces, on_change)
    )
    resyncer.start()
    memo.reconcile_soon.append(resyncer.request)
    memo.loops.extend([resyncer, guard_loop.start(memo, indexes)])


@kopf.on.cleanup()
def stop_loops(memo: OperatorState, **_: Any) -> None:
    for loop in memo.loops:
        loop.stop()
    # What the last passes reported: a moment to post it, not a hang at exit.
    memo.events.flush(timeout=2.0)
