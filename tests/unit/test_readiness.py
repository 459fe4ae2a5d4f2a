"""The per-pod readiness gate: True only while the pod serves every model."""

from __future__ import annotations

from typing import Any

from tfops.model import parse_spec
from tfops.model_status import VersionStatus
from tfops.promotion import Configured
from tfops.readiness import CONDITION, UNCHECKED, config_differences, gate_change, gate_for_pod

SPEC = parse_spec(
    {
        "models": [
            {"name": "ranker", "basePath": "gs://b/ranker", "versionPolicy": {"specific": [1, 2]},
             "versionLabels": {"stable": 1}},
            {"name": "scorer", "basePath": "gs://b/scorer"},
        ]
    }
)  # fmt: skip


def _v(version: int, state: str) -> VersionStatus:
    return VersionStatus(version=version, state=state)


def test_a_pod_serving_every_model_is_ready() -> None:
    answer = {"ranker": [_v(2, "AVAILABLE"), _v(1, "AVAILABLE")], "scorer": [_v(3, "AVAILABLE")]}
    gate = gate_for_pod(SPEC, answer, {})
    assert (gate.status, gate.reason) == ("True", "ModelsAvailable")


def test_a_model_still_loading_or_missing_keeps_the_pod_out() -> None:
    loading = {"ranker": [_v(1, "AVAILABLE")], "scorer": [_v(3, "LOADING")]}
    gate = gate_for_pod(SPEC, loading, {})
    assert (gate.status, gate.reason) == ("False", "ModelsNotAvailable")
    assert "scorer" in gate.message and "ranker" not in gate.message
    assert gate_for_pod(SPEC, {"ranker": [_v(1, "AVAILABLE")]}, {}).status == "False"


def test_the_labelled_version_decides_during_a_promotion() -> None:
    """Version 2 still loads while the label names 1: the pod answers for `stable`."""
    answer = {"ranker": [_v(2, "LOADING"), _v(1, "AVAILABLE")], "scorer": [_v(3, "AVAILABLE")]}
    assert gate_for_pod(SPEC, answer, {}).status == "True"
    # Once models.config moves the label to 2, the pod must serve 2.
    moved = {"ranker": Configured((1, 2), (("stable", 2),))}
    assert gate_for_pod(SPEC, answer, moved).status == "False"


def test_a_pod_that_does_not_answer_is_out() -> None:
    gate = gate_for_pod(SPEC, "timed out", {})
    assert (gate.status, gate.reason) == ("False", "ModelStatusUnknown")
    assert "timed out" in gate.message


def _pod(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": {"conditions": conditions}}


def test_the_gate_is_written_only_when_it_changes() -> None:
    assert gate_change(_pod([]), UNCHECKED, "t1") == {
        "type": CONDITION,
        "status": "True",
        "reason": "NotChecked",
        "message": UNCHECKED.message,
        "lastTransitionTime": "t1",
    }
    same = {"type": CONDITION, "status": "True", "reason": "NotChecked", "lastTransitionTime": "t0"}
    assert gate_change(_pod([same]), UNCHECKED, "t1") is None
    # A new reason with the same status keeps the transition time.
    answer = {"ranker": [_v(1, "AVAILABLE")], "scorer": [_v(1, "AVAILABLE")]}
    change = gate_change(_pod([same]), gate_for_pod(SPEC, answer, {}), "t2")
    assert change is not None and change["lastTransitionTime"] == "t0"
    assert change["reason"] == "ModelsAvailable"


def test_config_differences_name_what_the_pod_has_not_applied() -> None:
    answer = {"ranker": [_v(1, "AVAILABLE")], "scorer": [_v(3, "AVAILABLE")]}
    assert config_differences(SPEC, answer, {}) == ["model ranker version(s) 2 not reported"]
    # Loading or failed counts as applied: TF Serving was told of the version.
    told = {"ranker": [_v(2, "LOADING"), _v(1, "AVAILABLE")], "scorer": [_v(3, "AVAILABLE")]}
    assert config_differences(SPEC, told, {}) == []
    assert config_differences(SPEC, {"ranker": told["ranker"]}, {}) == [
        "model scorer unknown to it"
    ]
    # What models.config serves now decides, not the spec (a transition in flight).
    assert config_differences(SPEC, answer, {"ranker": Configured((1,), ())}) == []


def test_a_pod_awaits_its_gate_once_up_and_until_the_gate_is_set() -> None:
    from tfops.readiness import awaits_gate

    def pod(*conditions: tuple[str, str], gated: bool = True) -> dict[str, Any]:
        gates = [{"conditionType": CONDITION}] if gated else []
        return {
            "metadata": {"name": "p"},
            "spec": {"readinessGates": gates},
            "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]},
        }

    assert awaits_gate(pod(("ContainersReady", "True")))
    assert not awaits_gate(pod(("ContainersReady", "False")))  # TF Serving not up yet
    assert not awaits_gate(pod(("ContainersReady", "True"), (CONDITION, "False")))
    assert not awaits_gate(pod(("ContainersReady", "True"), gated=False))


def test_the_memory_guard_is_told_which_pods_are_loading_a_model() -> None:
    from tfops.readiness import loading_pods

    served = {"ranker": [_v(2, "AVAILABLE"), _v(1, "AVAILABLE")], "scorer": [_v(3, "AVAILABLE")]}
    states: dict[str, Any] = {
        "steady": served,
        "loading": {**served, "scorer": [_v(4, "LOADING"), _v(3, "AVAILABLE")]},
        "unloading": {**served, "scorer": [_v(3, "UNLOADING")]},
        # models.config names version 2 of ranker, the pod does not list it yet.
        "behind": {**served, "ranker": [_v(1, "AVAILABLE")]},
        "silent": "connection refused",
    }
    found = loading_pods(SPEC, states, {}, promoting=False, lagging={})
    assert found == {"loading", "unloading", "behind"}
    # Once the watchdog's budget has run out the pod is ConfigNotApplied: its
    # growth counts again.
    assert "behind" not in loading_pods(SPEC, states, {}, promoting=False, lagging={"behind": []})
    # A promotion step under way: every answering pod is loading.
    everyone = loading_pods(SPEC, states, {}, promoting=True, lagging={})
    assert everyone == {"steady", "loading", "unloading", "behind"}
