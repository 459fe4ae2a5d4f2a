"""kopf's registrations for ModelServers: the watch-fed indexes of what they own,
the create/update/resume handler, Deployment events, and the resync loop's start
and stop. The logic is in tfops.reconcile; this module only wires it to kopf."""

from __future__ import annotations

from typing import Any

import kopf

from tfops import guard_loop, readiness, reconcile
from tfops.clients import kube
from tfops.model import GROUP, PLURAL, VERSION
from tfops.owned import BY_KIND, WATCHED_KINDS
from tfops.render.common import MANAGED_BY
from tfops.resync import Resyncer
from tfops.state import OperatorState

OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}


def _by_owner(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[tuple[str, str], reconcile.Stored]:
    key = reconcile.owner_key(namespace, labels)
    return {key: reconcile.Stored(body)} if key else {}


for _owned in WATCHED_KINDS:
    _resource = (
        (_owned.group, _owned.version, _owned.plural) if _owned.group else ("v1", _owned.plural)
    )
    kopf.index(*_resource, labels=OWNED, id=_owned.index)(_by_owner)

kopf.index(GROUP, VERSION, PLURAL, id=reconcile.MODELSERVER_INDEX)(
    lambda body, namespace, name, **_: {(namespace, name): reconcile.Stored(body)}
)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_modelserver_change(
    body: kopf.Body, logger: Any, reason: str, memo: OperatorState, **kwargs: Any
) -> None:
    # Status goes through the API, under the fleet's lock, not on kopf's patch
    # after the handler returns: that patch could land after a later reconcile's
    # write and put back fields from this one (Ready from one write, modelsSummary
    # from another).
    sink = kube.ApiSink(memo.api(), body)
    reconcile.reconcile(memo, body, sink, logger, indexes=kwargs, trigger=reason)


def _reconcile_owner(
    memo: OperatorState,
    namespace: str | None,
    labels: kopf.Labels,
    logger: Any,
    indexes: reconcile.Indexes,
    *,
    trigger: str,
) -> None:
    """Re-observe the ModelServer an owned object's labels name, if it exists."""
    key = reconcile.owner_key(namespace, labels)
    bodies = reconcile.lookup(indexes, reconcile.MODELSERVER_INDEX, key) if key else []
    if bodies:
        sink = kube.ApiSink(memo.api(), bodies[0])
        reconcile.reconcile(memo, bodies[0], sink, logger, indexes=indexes, trigger=trigger)


@kopf.on.event(*BY_KIND["Deployment"].resource, labels=OWNED)
def on_owned_deployment_event(
    namespace: str | None, labels: kopf.Labels, logger: Any, memo: OperatorState, **kwargs: Any
) -> None:
    """A fleet's Deployment changed (pods became ready, someone edited or deleted
    it): re-observe its ModelServer now rather than at the next resync."""
    _reconcile_owner(memo, namespace, labels, logger, kwargs, trigger="deployment")


@kopf.on.event(
    *BY_KIND["Pod"].resource,
    labels=OWNED,
    when=lambda body, **_: readiness.awaits_gate(body),
)
def on_pod_awaiting_its_gate(
    namespace: str | None, labels: kopf.Labels, logger: Any, memo: OperatorState, **kwargs: Any
) -> None:
    """A serving pod's TF Serving came up and its readiness gate was never set:
    judge it now, not at the next resync (until then it takes no traffic)."""
    _reconcile_owner(memo, namespace, labels, logger, kwargs, trigger="pod")


@kopf.on.startup()
def start_loops(memo: OperatorState, **kwargs: Any) -> None:
    """The resync loop and the memory guard. kopf hands startup handlers the same
    index objects it keeps filling."""
    resyncer = Resyncer(memo, kwargs)
    resyncer.start()
    memo.loops.extend([resyncer, guard_loop.start(memo, kwargs)])


@kopf.on.cleanup()
def stop_loops(memo: OperatorState, **_: Any) -> None:
    for loop in memo.loops:
        loop.stop()
