"""The reconcile's decisions without a cluster: the order objects are applied in,
and what a failure tells the user."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from tfops.reconcile import ApplyFailed, apply_phases, describe_failure


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
