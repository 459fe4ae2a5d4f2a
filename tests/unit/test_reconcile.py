"""The reconcile without a cluster: what it applies, in which order, what it
reports, and what a failure tells the user (a fake writer and sink stand in for
the API server; the integration tests run the same against a real one)."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from tfops.config import OperatorConfig
from tfops.owned import BY_KIND, WATCHED_KINDS
from tfops.reconcile import (
    ApplyFailed,
    apply_phases,
    describe_failure,
    first_difference,
    reconcile,
)
from tfops.state import Backoff, OperatorState
from tfops.watched import MODELSERVER_INDEX, Stored


def _item(kind: str, current: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None, None]:
    obj = {"kind": kind, "metadata": {"name": "x"}}
    return obj, (obj if current else None), None


def _kinds(phases: list[list[Any]]) -> list[list[str]]:
    return [[item[0]["kind"] for item in phase] for phase in phases]


def test_a_new_fleet_gets_its_deployment_before_anything_else() -> None:
    pending = [_item(k) for k in ("ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler")]
    assert _kinds(apply_phases(pending, creating=True)) == [
        ["Deployment"],
        ["ConfigMap", "Service", "HorizontalPodAutoscaler"],
    ]


def test_a_changed_deployment_waits_for_its_config_map() -> None:
    pending = [_item("ConfigMap", True), _item("Deployment", True), _item("Service", True)]
    assert _kinds(apply_phases(pending, creating=False)) == [
        ["ConfigMap"],
        ["Deployment"],
        ["Service"],
    ]


def test_without_a_deployment_change_everything_goes_at_once() -> None:
    pending = [_item("ConfigMap", True), _item("Service", True)]
    assert _kinds(apply_phases(pending, creating=False)) == [["ConfigMap", "Service"]]
    assert apply_phases([], creating=False) == []


def test_a_refused_apply_names_the_object_the_api_message_and_the_fix() -> None:
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = '{"message": "spec.template.spec.volumes[0].nfs.server: Required value"}'
    reason, message, ours = describe_failure(ApplyFailed("Deployment", "search", error))
    assert reason == "ApplyFailed" and not ours
    assert "Deployment search (HTTP 422)" in message and "nfs.server: Required value" in message
    assert "fix the spec field" in message


def test_a_bug_is_reported_as_ours() -> None:
    reason, message, ours = describe_failure(TypeError("unsupported operand"))
    assert reason == "ReconcileFailed" and ours and "TypeError" in message


# -- the whole reconcile, against a fake writer and sink --------------------------


class FakeWriter:
    """The API server's side of applies, as far as reconcile can tell."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str, str]] = []
        self.handed_over: list[dict[str, Any]] = []
        self.pod_conditions: list[tuple[str, dict[str, Any]]] = []
        self.version = 100

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] in self.refuse:
            error = ApiException(status=422, reason="Unprocessable Entity")
            error.body = '{"message": "admission webhook denied the request"}'
            raise error
        self.version += 1
        live = copy.deepcopy(obj)
        live["metadata"]["resourceVersion"] = str(self.version)
        self.applied.append(live)
        return live

    def hand_over(self, obj: dict[str, Any], manager: str) -> None:
        self.handed_over.append(obj)

    def set_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> int:
        self.version += 1
        self.pod_conditions.append((pod, condition))
        return self.version

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append((kind, namespace, name))
        return True


class FakeSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.status_writes: list[dict[str, Any]] = []

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def status(self, changes: dict[str, Any]) -> int:
        self.status_writes.append(changes)
        return 0  # resourceVersion unknown


SPEC = {
    "modelStorage": {"claimName": "models"},
    "models": [{"name": "ranker", "basePath": "/models/ranker", "size": "100Mi"}],
}


def _body(spec: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "search", "namespace": "ml", "uid": "u-1", "generation": generation},
        "spec": copy.deepcopy(spec or SPEC),
    }


def _indexes(objects: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], list[Any]]]:
    """kopf's indexes as the watches would fill them with these objects."""
    indexes: dict[str, dict[tuple[str, str], list[Any]]] = {
        owned.index: {} for owned in WATCHED_KINDS
    }
    indexes[MODELSERVER_INDEX] = {}
    for obj in objects:
        indexes[BY_KIND[obj["kind"]].index].setdefault(("ml", "search"), []).append(Stored(obj))
    return indexes


def _state() -> OperatorState:
    return OperatorState(config=OperatorConfig(serving_url_template=""))


def _reconcile(
    state: OperatorState, body: dict[str, Any], writer: FakeWriter, indexes: Any
) -> FakeSink:
    sink = FakeSink()
    reconcile(
        state, body, sink, logging.getLogger("test"), indexes=indexes, trigger="t", writer=writer
    )
    return sink


def _ready(status_writes: list[dict[str, Any]]) -> dict[str, Any]:
    conditions = [c for w in status_writes for c in w.get("conditions") or []]
    return [c for c in conditions if c["type"] == "Ready"][-1]


def test_a_new_modelserver_creates_its_objects_deployment_first_and_reports() -> None:
    writer, state = FakeWriter(), _state()
    sink = _reconcile(state, _body(), writer, _indexes([]))
    kinds = [obj["kind"] for obj in writer.applied]
    assert kinds[0] == "Deployment"
    assert sorted(kinds) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    assert [e[1] for e in sink.events] == ["Created"]
    assert _ready(sink.status_writes)["status"] == "False"


def test_an_unchanged_fleet_is_neither_applied_nor_reported_again() -> None:
    writer, state = FakeWriter(), _state()
    first = _reconcile(state, _body(), writer, _indexes([]))
    live = list(writer.applied)
    writer.applied.clear()
    body = _body()
    body["status"] = {k: v for w in first.status_writes for k, v in w.items()}
    sink = _reconcile(_state(), body, writer, _indexes(live))
    assert writer.applied == [] and sink.status_writes == [] and sink.events == []


def test_drift_in_one_object_reapplies_only_that_object_naming_the_field() -> None:
    writer, state = FakeWriter(), _state()
    _reconcile(state, _body(), writer, _indexes([]))
    live = copy.deepcopy(writer.applied)
    writer.applied.clear()
    service = next(obj for obj in live if obj["kind"] == "Service")
    service["spec"]["ports"][0]["port"] = 9999
    sink = _reconcile(_state(), _body(), writer, _indexes(live))
    assert [obj["kind"] for obj in writer.applied] == ["Service"]
    ((_, reason, message),) = sink.events
    assert reason == "Updated" and "spec.ports[0].port differed" in message


def test_a_refused_deployment_creates_nothing_else_and_backs_off() -> None:
    writer, state = FakeWriter(refuse={"Deployment"}), _state()
    sink = _reconcile(state, _body(), writer, _indexes([]))
    assert writer.applied == []
    ready = _ready(sink.status_writes)
    assert ready["reason"] == "ApplyFailed" and "admission webhook denied" in ready["message"]
    assert [e[1] for e in sink.events] == ["ApplyFailed"]
    # Tried again at once, the same generation waits out its back-off...
    writer.refuse.clear()
    _reconcile(state, _body(), writer, _indexes([]))
    assert writer.applied == []
    # ...and a new generation does not.
    _reconcile(state, _body(generation=2), writer, _indexes([]))
    assert writer.applied


def test_an_invalid_spec_is_reported_and_nothing_is_written() -> None:
    writer = FakeWriter()
    bad = {**SPEC, "replicas": -1}
    sink = _reconcile(_state(), _body(bad), writer, _indexes([]))
    assert writer.applied == []
    ready = _ready(sink.status_writes)
    assert ready["reason"] == "InvalidSpec" and "spec.replicas" in ready["message"]


def test_turning_autoscaling_off_deletes_the_hpa_after_handing_over_replicas() -> None:
    scaled = {**SPEC, "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}
    writer, state = FakeWriter(), _state()
    _reconcile(state, _body(scaled), writer, _indexes([]))
    live = list(writer.applied)
    assert "HorizontalPodAutoscaler" in [obj["kind"] for obj in live]
    _reconcile(_state(), _body(), writer, _indexes(live))
    assert writer.deleted == [("HorizontalPodAutoscaler", "ml", "search")]


def test_the_headless_service_comes_and_goes_with_its_field_beside_the_main_one() -> None:
    headless = {**SPEC, "traffic": {"headlessService": True}}
    writer, state = FakeWriter(), _state()
    _reconcile(state, _body(headless), writer, _indexes([]))
    services = {o["metadata"]["name"]: o["spec"] for o in writer.applied if o["kind"] == "Service"}
    assert services["search-headless"]["clusterIP"] == "None"
    assert "clusterIP" not in services["search"]
    assert services["search-headless"]["selector"] == services["search"]["selector"]
    live = list(writer.applied)
    # Both in the index: each is compared with its own live copy, nothing re-applied.
    writer.applied.clear()
    _reconcile(_state(), _body(headless), writer, _indexes(live))
    assert writer.applied == [] and writer.deleted == []
    # Turned off: only the headless one goes.
    _reconcile(_state(), _body(), writer, _indexes(live))
    assert writer.deleted == [("Service", "ml", "search-headless")]
    assert writer.applied == []


def test_first_difference_names_the_first_rendered_field_that_differs() -> None:
    desired = {"spec": {"replicas": 2, "ports": [{"port": 80}, {"port": 81}]}}
    assert first_difference(desired, desired) is None
    # Fields the apiserver defaulted (or other managers own) are not compared.
    assert first_difference(desired, {"spec": {**desired["spec"], "extra": 1}}) is None
    assert first_difference(desired, {"spec": {"ports": []}}) == "spec.replicas"
    assert first_difference(desired, {"spec": {"replicas": 2, "ports": [{"port": 80}]}}) == (
        "spec.ports"
    )
    changed = {"spec": {"replicas": 2, "ports": [{"port": 80}, {"port": 9}]}}
    assert first_difference(desired, changed) == "spec.ports[1].port"
    assert first_difference(desired, {"spec": "x"}) == "spec"


TWO_MODELS = {
    **SPEC,
    "models": [
        {"name": "ranker", "basePath": "/models/ranker", "size": "100Mi"},
        {"name": "scorer", "basePath": "/models/scorer", "size": "100Mi"},
    ],
}


def _running_pods(*names: str) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {"name": name, "namespace": "ml"},
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": "tensorflow-serving", "state": {"running": {}}}],
            },
        }
        for name in names
    ]


@contextlib.contextmanager
def _serving(answer: Callable[[str], None]) -> Iterator[str]:
    """A loopback REST server: `answer(path)` runs before each reply (to wait or
    block); yields the URL template for the operator."""
    import http.server
    import json
    import threading

    class Serving(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self.path)
            body = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, *_: Any) -> None:
            pass  # a client that timed out closed its end: expected here

    server = Server(("127.0.0.1", 0), Serving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{{pod}}"
    finally:
        server.shutdown()
        server.server_close()


def test_model_states_ask_every_pod_and_model_at_once() -> None:
    """Each answer waits until all six requests (3 pods x 2 models) have arrived:
    asked one after another, the first would time out."""
    import threading

    from tfops.model import parse_spec
    from tfops.reconcile import _model_states

    arrived = threading.Barrier(6, timeout=5)
    with _serving(lambda _path: arrived.wait()) as template:
        state = OperatorState(
            config=OperatorConfig(serving_url_template=template, model_status_timeout_seconds=2.0)
        )
        states = _model_states(state, parse_spec(TWO_MODELS), _running_pods("a", "b", "c"))
    assert set(states) == {"a", "b", "c"}
    assert all(isinstance(answer, dict) for answer in states.values()), states
    assert all(set(answer) == {"ranker", "scorer"} for answer in states.values()), states


def test_a_dead_pod_costs_one_time_out_and_a_slow_one_its_slowest_answer() -> None:
    """A pod that never answers is reported with its error after one time-out (not
    one per model); a pod slower than half the time-out still answers for both."""
    import threading
    import time

    from tfops.model import parse_spec
    from tfops.reconcile import _model_states

    released = threading.Event()

    def answer(path: str) -> None:
        if path.startswith("/dead/"):
            released.wait(10)
        elif path.startswith("/slow/"):
            time.sleep(0.6)

    with _serving(answer) as template:
        state = OperatorState(
            config=OperatorConfig(serving_url_template=template, model_status_timeout_seconds=1.0)
        )
        started = time.monotonic()
        states = _model_states(state, parse_spec(TWO_MODELS), _running_pods("dead", "slow", "ok"))
        elapsed = time.monotonic() - started
        released.set()
    assert isinstance(states["dead"], str) and "timed out" in states["dead"], states
    assert states["slow"] == states["ok"] and set(states["ok"]) == {"ranker", "scorer"}
    assert elapsed < 1.9, f"took {elapsed:.2f} s: a time-out per model, not per pod"


def test_a_pod_found_with_every_model_available_a_moment_ago_is_not_asked_again() -> None:
    from tfops.model import parse_spec
    from tfops.model_status import VersionStatus
    from tfops.reconcile import FRESH_ANSWER_SECONDS, _model_states, _steady_answers
    from tfops.render import Owner

    asked: list[str] = []
    spec = parse_spec(TWO_MODELS)
    available = [VersionStatus(1, "AVAILABLE")]
    settled = {"ranker": available, "scorer": available}
    known = {
        "settled": (settled, 100.0),
        "loading": ({"ranker": available, "scorer": [VersionStatus(1, "LOADING")]}, 100.0),
        "one-model": ({"ranker": available}, 100.0),
        "old": (settled, 100.0 - FRESH_ANSWER_SECONDS),
    }
    with _serving(lambda path: asked.append(path.split("/")[1])) as template:
        state = OperatorState(config=OperatorConfig(serving_url_template=template))
        pods = _running_pods("settled", "loading", "one-model", "old", "new")
        states = _model_states(state, spec, pods, known=known, now=100.5)
    assert states["settled"] is settled
    # Anything that could still get better, or is as old as FRESH_ANSWER_SECONDS, is asked.
    assert sorted(set(asked)) == ["loading", "new", "old", "one-model"]
    assert len(asked) == 8  # both models of each
    # A reused answer keeps its time: passes a moment apart cannot keep it forever.
    state.answers[("ml", "search")] = known
    _steady_answers(state, Owner("search", "ml", "u-1"), states, now=100.5)
    assert state.answers[("ml", "search")]["settled"] == (settled, 100.0)
    assert state.answers[("ml", "search")]["new"][1] == 100.5


def test_a_resync_cycle_waits_for_a_backlog_of_changes_one_period_at_most() -> None:
    from tfops.resync import held_back

    due, period, workers = 100.0, 10.0, 16
    assert not held_back(workers, workers, due, due, period)  # each waiting pass has a worker
    assert held_back(workers + 1, workers, due, due, period)
    assert held_back(1000, workers, due + period - 0.1, due, period)
    # However long the burst: every fleet is re-observed within two periods.
    assert not held_back(1000, workers, due + period, due, period)


def test_resync_cycles_keep_their_cadence_and_report_lag() -> None:
    from tfops.resync import next_start

    # On time: one period after the previous start, whatever the cycle took.
    assert next_start(100.0, 10.0, 103.0) == (110.0, 0.0)
    # Overran by 4 s: start now (no burst of catch-up cycles) and say how late.
    assert next_start(100.0, 10.0, 114.0) == (114.0, 4.0)


def test_our_writes_are_trusted_until_the_lagging_index_catches_up() -> None:
    from tfops.reconcile import _remembered_write, live_object
    from tfops.state import Remembered

    ours = {"metadata": {"resourceVersion": "120"}, "spec": {"replicas": 3}}
    stale = {"metadata": {"resourceVersion": "100"}, "spec": {"replicas": 2}}
    written = Remembered(at=0.0, body=ours, resource_version=120)
    # The watch is 60 s behind: still our write, not the stale copy (or nothing).
    assert live_object(stale, written, now=60.0) is ours
    assert live_object(None, written, now=60.0) is ours
    # Caught up (or overtaken by someone else's edit): the index.
    newer = {"metadata": {"resourceVersion": "130"}, "spec": {"replicas": 5}}
    assert live_object(newer, written, now=1.0) is newer
    # Once caught up, the memory goes, so a later deletion is seen as one.
    memory = {"key": written}
    assert _remembered_write(memory, "key", {"metadata": {"resourceVersion": "120"}}) is None
    assert memory == {}
    # A write whose resourceVersion is unknown is trusted only briefly.
    unversioned = Remembered(at=0.0, body=ours)
    assert live_object(stale, unversioned, now=2.0) is ours
    assert live_object(stale, unversioned, now=60.0) is stale


def test_a_spec_is_parsed_once_per_generation() -> None:
    from tfops.reconcile import spec_and_plan

    state = _state()
    first = spec_and_plan(state, _body())
    assert spec_and_plan(state, _body()) == first
    assert spec_and_plan(state, _body())[0] is first[0]  # the remembered parse
    changed = {**SPEC, "replicas": 3}
    assert spec_and_plan(state, _body(changed, generation=2))[1].replicas == 3
    # The same name and generation under a new uid (deleted and re-created) is new.
    recreated = _body(changed, generation=2)
    recreated["metadata"]["uid"] = "u-2"
    recreated["spec"]["replicas"] = 4
    assert spec_and_plan(state, recreated)[1].replicas == 4


def test_what_the_process_keeps_per_modelserver_goes_with_it() -> None:
    from tfops.reconcile import spec_and_plan

    state = _state()
    kept, gone, busy = ("ml", "search"), ("ml", "deleted"), ("ml", "deleting")
    spec_and_plan(state, _body())
    for key in (kept, gone, busy):
        state.lock(key)
        state.answers[key] = {}
        state.backoffs[key] = Backoff(generation=1, attempts=1, retry_at=0.0)
    with state.lock(busy):
        state.forget_deleted({kept})
        # A pass still running for a deleted fleet keeps its lock until it ends.
        assert set(state.locks) == {kept, busy}
    assert set(state.answers) == set(state.backoffs) == {kept}
    assert set(state.plans) == {kept}
    state.forget_deleted({kept})
    assert set(state.locks) == {kept}


def _gated_pod(name: str, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from tfops.readiness import CONDITION

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": "7"},
        "spec": {
            "containers": [{"name": "tensorflow-serving"}],
            "readinessGates": [{"conditionType": CONDITION}],
        },
        "status": {
            "phase": "Running",
            "conditions": conditions or [{"type": "ContainersReady", "status": "True"}],
        },
    }


def test_readiness_gates_are_set_once_and_not_again_while_the_index_lags() -> None:
    from tfops.readiness import CONDITION

    writer, state = FakeWriter(), _state()
    _reconcile(state, _body(), writer, _indexes([]))
    live = list(writer.applied)
    plain = _gated_pod("search-b")
    del plain["spec"]["readinessGates"]  # from a template before the gate: left alone
    indexes = _indexes([*live, _gated_pod("search-a"), plain])
    _reconcile(state, _body(), writer, indexes)
    ((pod, condition),) = writer.pod_conditions
    assert pod == "search-a" and condition["type"] == CONDITION
    assert (condition["status"], condition["reason"]) == ("True", "NotChecked")
    # The pod index has not caught up yet: our write is trusted, nothing is re-sent.
    _reconcile(state, _body(), writer, indexes)
    assert len(writer.pod_conditions) == 1
    # Caught up with the condition: still nothing to write.
    caught_up = _gated_pod("search-a", [{"type": "ContainersReady", "status": "True"}, condition])
    caught_up["metadata"]["resourceVersion"] = str(writer.version)
    _reconcile(_state(), _body(), writer, _indexes([*live, caught_up]))
    assert len(writer.pod_conditions) == 1


def test_config_not_applied_waits_for_the_polls_and_a_load_then_names_the_pod() -> None:
    from tfops.model import parse_spec
    from tfops.model_status import VersionStatus
    from tfops.plan import make_plan
    from tfops.reconcile import _config_not_applied
    from tfops.render import Owner

    state, spec = _state(), parse_spec(SPEC)
    plan, owner = make_plan(spec), Owner("search", "ml", "u-1")
    stale = {"a": {"ranker": []}, "b": {"ranker": [VersionStatus(version=1, state="AVAILABLE")]}}

    def judge() -> tuple[dict[str, list[str]], float]:
        return _config_not_applied(
            state, owner, spec=spec, plan=plan, serving={}, model_states=stale
        )

    assert judge() == ({}, 0.0)  # first seen now: the clock starts
    assert judge()[0] == {}  # within the polls and the load budget
    seen, since = state.configs_seen[("ml", "search")]
    budget = plan.config_poll_seconds + plan.version_poll_seconds + plan.startup_budget_seconds
    state.configs_seen[("ml", "search")] = (seen, since - budget - 1)
    lagging, age = judge()
    assert lagging == {"a": ["model ranker unknown to it"]} and age > budget


def test_one_missed_answer_keeps_the_last_one_a_silence_does_not() -> None:
    from tfops.model_status import VersionStatus
    from tfops.reconcile import UNANSWERED_GRACE_SECONDS, _steady_answers
    from tfops.render import Owner

    state, owner = _state(), Owner("search", "ml", "u-1")
    served = {"ranker": [VersionStatus(version=1, state="AVAILABLE")]}
    assert _steady_answers(state, owner, {"a": served, "b": "refused"}, 0.0) == {
        "a": served,
        "b": "refused",  # never answered: reported at once
    }
    assert _steady_answers(state, owner, {"a": "timed out"}, 10.0) == {"a": served}
    late = UNANSWERED_GRACE_SECONDS + 1
    assert _steady_answers(state, owner, {"a": "timed out"}, late) == {"a": "timed out"}


def test_the_grace_for_a_missed_answer_outlasts_the_longest_wait_between_re_reads() -> None:
    """A cycle can wait one period for a backlog, so a settled fleet is re-read up to
    two periods apart: with a 60 s period, an answer 100 s old still covers one miss."""
    from tfops.model_status import VersionStatus
    from tfops.reconcile import UNANSWERED_GRACE_SECONDS, _steady_answers, unanswered_grace
    from tfops.render import Owner

    assert unanswered_grace(10.0) == UNANSWERED_GRACE_SECONDS
    assert unanswered_grace(60.0) == 180.0
    state = OperatorState(config=OperatorConfig(serving_url_template="", resync_seconds=60.0))
    owner = Owner("search", "ml", "u-1")
    served = {"ranker": [VersionStatus(version=1, state="AVAILABLE")]}
    _steady_answers(state, owner, {"a": served}, 0.0)
    assert _steady_answers(state, owner, {"a": "timed out"}, 100.0) == {"a": served}
    assert _steady_answers(state, owner, {"a": "timed out"}, 181.0) == {"a": "timed out"}
