"""What the watches hold (tfops.watched), how a stream is cut into events, and how
watch events become re-observations of a fleet."""

from __future__ import annotations

import copy
import threading
from typing import Any

from tfops.clients.kube_watch import stream_lines
from tfops.config import OperatorConfig
from tfops.render.common import MANAGED_BY, OWNER_LABEL, READINESS_CONDITION
from tfops.resync import Resyncer
from tfops.state import OperatorState
from tfops.watched import (
    MODELSERVER_INDEX,
    OwnedIndex,
    Stored,
    change_trigger,
    lookup,
    modelserver_trigger,
    owned_pods,
)


def _pod(name: str, namespace: str = "ml", owner: str | None = "search", **extra: Any) -> dict:
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY}
    if owner:
        labels[OWNER_LABEL] = owner
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "labels": labels,
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"containers": [{"name": "serving", "args": ["--port=8500"]}]},
        **extra,
    }


def _names(index: OwnedIndex, key: tuple[str, str]) -> list[str]:
    return sorted(stored.body()["metadata"]["name"] for stored in index.get(key) or [])


def test_an_index_keeps_objects_by_owner_trimmed_and_hands_out_copies() -> None:
    index = OwnedIndex()
    assert index.put(_pod("a")) == ("ml", "search")
    assert index.put(_pod("b")) == ("ml", "search")
    assert index.put(_pod("stray", owner=None)) is None  # names no ModelServer
    assert _names(index, ("ml", "search")) == ["a", "b"]
    assert len(index) == 2

    body = owned_pods({"tfops_pods": index}, "ml", "search")[0]
    assert "managedFields" not in body["metadata"]
    assert body["spec"]["containers"] == [{"name": "serving", "resources": {}}]
    body["metadata"]["name"] = "changed by a caller"
    assert _names(index, ("ml", "search")) == ["a", "b"]


def test_a_modified_object_replaces_its_copy_and_a_deleted_one_goes() -> None:
    index = OwnedIndex()
    index.put(_pod("a"))
    index.put(_pod("a", status={"phase": "Running"}))
    assert [s.body()["status"] for s in index.get(("ml", "search")) or []] == [{"phase": "Running"}]
    # Relabelled to another ModelServer: it moves.
    index.put(_pod("a", owner="other"))
    assert index.get(("ml", "search")) is None
    assert _names(index, ("ml", "other")) == ["a"]
    assert index.remove(_pod("a")) == ("ml", "other")
    assert index.get(("ml", "other")) is None
    assert list(index) == [] and len(index) == 0


def test_a_fresh_list_replaces_its_namespace_only() -> None:
    index = OwnedIndex()
    index.put(_pod("deleted-while-no-watch-ran"))
    index.put(_pod("kept", namespace="other-ns"))
    fresh = OwnedIndex()
    fresh.put(_pod("new"))
    index.replace(fresh, "ml")
    assert _names(index, ("ml", "search")) == ["new"]
    assert _names(index, ("other-ns", "search")) == ["kept"]

    everywhere = OwnedIndex()
    everywhere.put(_pod("only"))
    index.replace(everywhere, None)
    assert sorted(index) == [("ml", "search")]
    assert _names(index, ("ml", "search")) == ["only"]


def _deployment(**status: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "search", "generation": 1, "uid": "d"},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, **status},
    }


def test_a_deployment_triggers_a_pass_only_when_what_status_reads_changed() -> None:
    before = _deployment(readyReplicas=1)
    kept = Stored(before)
    # The controller's bookkeeping (conditions, collisionCount): no pass.
    noise = copy.deepcopy(before)
    noise["status"]["conditions"] = [{"type": "Available", "reason": "MinimumReplicasAvailable"}]
    noise["status"]["collisionCount"] = 1
    assert change_trigger("Deployment", "MODIFIED", noise, kept) is None
    # A pod more ready, a spec edited, a rollout stuck: a pass each.
    assert change_trigger("Deployment", "MODIFIED", _deployment(readyReplicas=2), kept)
    edited = copy.deepcopy(before)
    edited["metadata"]["generation"] = 2
    assert change_trigger("Deployment", "MODIFIED", edited, kept) == "deployment"
    stuck = copy.deepcopy(before)
    stuck["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    assert change_trigger("Deployment", "MODIFIED", stuck, kept) == "deployment"
    # Deleted (or its labels removed: the selected watch says DELETED): a pass.
    assert change_trigger("Deployment", "DELETED", before, kept) == "deployment"
    # Created: the echo of the pass that created it.
    assert change_trigger("Deployment", "ADDED", before, None) is None
    # Changed before the index knew it (a watch restarted): a pass, to be sure.
    assert change_trigger("Deployment", "MODIFIED", before, None) == "deployment"


def test_pods_awaiting_their_gate_trigger_a_pass() -> None:
    assert change_trigger("ConfigMap", "MODIFIED", {}, None) is None
    assert change_trigger("Pod", "MODIFIED", _pod("starting"), None) is None
    awaiting = _pod(
        "up",
        spec={
            "containers": [{"name": "serving"}],
            "readinessGates": [{"conditionType": READINESS_CONDITION}],
        },
        status={
            "phase": "Running",
            "conditions": [{"type": "ContainersReady", "status": "True"}],
        },
    )
    assert change_trigger("Pod", "MODIFIED", awaiting, None) == "pod"


def test_a_modelserver_is_queued_when_its_spec_is_unobserved() -> None:
    def body(generation: int, observed: int | None = None, **meta: Any) -> dict[str, Any]:
        status = {} if observed is None else {"status": {"observedGeneration": observed}}
        return {"metadata": {"name": "search", "generation": generation, **meta}, **status}

    assert modelserver_trigger("ADDED", body(1)) == "create"
    assert modelserver_trigger("MODIFIED", body(2, observed=1)) == "update"
    # Listed when kopf's watch (re)started: queued only when its spec is unobserved.
    assert modelserver_trigger(None, body(3, observed=2)) == "update"
    assert modelserver_trigger(None, body(3, observed=3)) is None
    # Our own status write, a label edit: the resync re-observes it, no extra pass.
    assert modelserver_trigger("MODIFIED", body(2, observed=2)) is None
    assert modelserver_trigger("DELETED", body(2, observed=1)) is None
    deleting = body(2, observed=1, deletionTimestamp="2026-12-06T00:00:00Z")
    assert modelserver_trigger("MODIFIED", deleting) is None


def test_a_resync_skips_a_fleet_whose_pass_is_running_or_queued() -> None:
    body = {"metadata": {"name": "search", "namespace": "ml", "uid": "u"}, "spec": {}}
    indexes = {MODELSERVER_INDEX: {("ml", "search"): [Stored(body)]}}
    resyncer = _CountingResyncer(OperatorState(config=OperatorConfig()), indexes)
    try:
        resyncer.request(("ml", "search"), "create")
        assert resyncer.running.wait(10)
        resyncer._resync_key(("ml", "search"))  # in the cycle, while the create runs
        resyncer.release.set()
        resyncer.queue.join()
        assert resyncer.passes == [("search", "create")]
        resyncer.passed.clear()  # (the create's pass would skip it for half a period)
        resyncer._resync_key(("ml", "search"))  # idle now: re-observed
        assert resyncer.passes == [("search", "create"), ("search", "resync")]
        assert resyncer.busy == set()
    finally:
        resyncer.stop()


def test_a_stream_is_cut_into_lines_wherever_its_chunks_end() -> None:
    events = [b'{"type":"ADDED"}', b'{"type":"MODIFIED","object":{"a":1}}', b'{"type":"x"}']
    stream = b"\n".join(events) + b"\n"
    for cut in range(1, 12):
        chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
        assert list(stream_lines(iter(chunks))) == events
    # A last line without its newline still counts; blank lines do not.
    assert list(stream_lines(iter([b"a\n\n", b"b"]))) == [b"a", b"b"]


class _CountingResyncer(Resyncer):
    def __init__(self, state: OperatorState, indexes: dict[str, Any], workers: int = 16) -> None:
        super().__init__(state, indexes, workers)
        self.passes: list[tuple[str, str]] = []
        self.running = threading.Event()
        self.release = threading.Event()

    def resync_one(self, body: dict[str, Any], trigger: str = "resync") -> None:
        self.passes.append((body["metadata"]["name"], trigger))
        self.running.set()
        self.release.wait(10)


def test_events_during_a_fleets_pass_fold_into_one_more_pass() -> None:
    body = {"metadata": {"name": "search", "namespace": "ml", "uid": "u"}, "spec": {}}
    indexes = {MODELSERVER_INDEX: {("ml", "search"): [Stored(body)]}}
    resyncer = _CountingResyncer(OperatorState(config=OperatorConfig()), indexes)
    assert lookup(indexes, MODELSERVER_INDEX, ("ml", "search"))
    try:
        resyncer.request(("ml", "search"), "deployment")
        assert resyncer.running.wait(10)
        # While the first pass runs, a rollout's many events ask for one more pass.
        for _ in range(5):
            resyncer.request(("ml", "search"), "pod")
        resyncer.request(("ml", "gone"), "deployment")  # no such ModelServer: nothing
        resyncer.release.set()
        resyncer.queue.join()
        assert resyncer.passes == [("search", "deployment"), ("search", "pod")]
        assert resyncer.busy == set() and resyncer.again == {}
    finally:
        resyncer.stop()


def test_a_resync_skips_a_fleet_its_own_events_just_re_observed() -> None:
    body = {"metadata": {"name": "search", "namespace": "ml", "uid": "u"}, "spec": {}}
    indexes = {MODELSERVER_INDEX: {("ml", "search"): [Stored(body)]}}
    resyncer = _CountingResyncer(OperatorState(config=OperatorConfig(resync_seconds=10)), indexes)
    resyncer.release.set()
    try:
        resyncer.cycle()
        resyncer.cycle()  # resync passes alone never make the next cycle skip it
        assert resyncer.passes == [("search", "resync"), ("search", "resync")]
        resyncer.request(("ml", "search"), "deployment")
        resyncer.queue.join()
        resyncer.cycle()  # within half a period of the Deployment's pass: skipped
        assert resyncer.passes[-1] == ("search", "deployment")
        resyncer.passed[("ml", "search")] -= 6  # that pass began 6 s ago
        resyncer.cycle()
        assert resyncer.passes[-1] == ("search", "resync") and len(resyncer.passes) == 4
    finally:
        resyncer.stop()


def test_queued_passes_go_most_urgent_first() -> None:
    """A pod awaiting its gate, then a rollout's progress, then new fleets: a
    creation burst does not hold the fleets already created."""
    names = ["busy", "new", "rolling", "gated"]
    indexes = {
        MODELSERVER_INDEX: {
            ("ml", name): [Stored({"metadata": {"name": name, "namespace": "ml", "uid": name}})]
            for name in names
        }
    }
    resyncer = _CountingResyncer(OperatorState(config=OperatorConfig()), indexes, workers=1)
    try:
        resyncer.request(("ml", "busy"), "create")
        assert resyncer.running.wait(10)  # the one worker is taken
        resyncer.request(("ml", "new"), "create")
        resyncer.request(("ml", "rolling"), "deployment")
        resyncer.request(("ml", "gated"), "pod")
        resyncer.release.set()
        resyncer.queue.join()
        assert resyncer.passes == [
            ("busy", "create"),
            ("gated", "pod"),
            ("rolling", "deployment"),
            ("new", "create"),
        ]
    finally:
        resyncer.stop()
