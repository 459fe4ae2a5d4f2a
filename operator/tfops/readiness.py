"""The per-pod readiness gate: a pod takes traffic only while it serves every model.

TF Serving's own probes say only "started": its gRPC health service is SERVING once
the initial config has loaded, so a pod stays in the Service while a model added
later is still loading or has failed. Every serving pod carries a readiness gate
(`readinessGates` in the pod template) whose condition the operator sets from the
model states it already reads: the kubelet counts the pod Ready, and the endpoint
controller lists it, only while the condition is True.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfops.model import ModelServerSpec
from tfops.model_status import VersionStatus
from tfops.promotion import Configured
from tfops.render.common import READINESS_CONDITION as CONDITION


@dataclass(frozen=True)
class Gate:
    status: str  # "True" or "False"
    reason: str
    message: str


def serves(states: list[VersionStatus], configured: Configured) -> bool:
    """Whether a pod can answer for a model: every version a label names is
    AVAILABLE (clients ask by label), else some configured version is (during a
    promotion the old one serves while the new one loads)."""
    available = {v.version for v in states if v.state == "AVAILABLE"}
    labelled = set(configured.label_map.values())
    if labelled:
        return labelled <= available
    if configured.versions is not None:
        return bool(available & set(configured.versions))
    return bool(available)


def gate_for_pod(
    spec: ModelServerSpec,
    answer: dict[str, list[VersionStatus]] | str,
    serving: dict[str, Configured],
) -> Gate:
    """The gate of one running pod, from its TF Serving's answer (or why there was
    none) and what models.config serves now."""
    if isinstance(answer, str):
        return Gate("False", "ModelStatusUnknown", f"TF Serving did not answer: {answer}")
    missing = [
        model.name
        for model in spec.models
        if not serves(answer.get(model.name, []), serving.get(model.name) or Configured.of(model))
    ]
    if missing:
        return Gate(
            "False",
            "ModelsNotAvailable",
            f"Not serving {', '.join(missing)} yet (loading, failed or not configured).",
        )
    return Gate("True", "ModelsAvailable", f"Serving all {len(spec.models)} model(s).")


def awaits_gate(pod: Mapping[str, Any]) -> bool:
    """A pod whose TF Serving is up (ContainersReady) and whose gate was never set:
    the moment to judge it without waiting for the resync."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    if meta.get("deletionTimestamp"):
        return False
    if not any(g.get("conditionType") == CONDITION for g in spec.get("readinessGates") or []):
        return False
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return conditions.get("ContainersReady") == "True" and CONDITION not in conditions


UNCHECKED = Gate(
    "True", "NotChecked", "The operator does not read model states (no serving URL template)."
)


def gate_change(pod: dict[str, Any], gate: Gate, now: str) -> dict[str, Any] | None:
    """The condition to write on the pod, or None when it already says this."""
    current = next(
        (
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") == CONDITION
        ),
        None,
    )
    if current is not None and (current.get("status"), current.get("reason")) == (
        gate.status,
        gate.reason,
    ):
        return None
    changed = current is None or current.get("status") != gate.status
    return {
        "type": CONDITION,
        "status": gate.status,
        "reason": gate.reason,
        "message": gate.message,
        "lastTransitionTime": now if changed else current.get("lastTransitionTime", now),
    }


def config_differences(
    spec: ModelServerSpec,
    answer: dict[str, list[VersionStatus]],
    serving: dict[str, Configured],
) -> list[str]:
    """What a pod reports that models.config does not say: a model it does not know,
    or a specific version it reports in no state at all (TF Serving lists every
    version it was told to serve, loading, available or failed). Empty when it has
    applied the config. Labels are not reported over REST, so not compared."""
    differences = []
    for model in spec.models:
        states = answer.get(model.name, [])
        if not states:
            differences.append(f"model {model.name} unknown to it")
            continue
        configured = (serving.get(model.name) or Configured.of(model)).versions
        reported = {v.version for v in states}
        missing = sorted(set(configured or ()) - reported)
        if missing:
            differences.append(
                f"model {model.name} version(s) {', '.join(map(str, missing))} not reported"
            )
    return differences


# TF Serving's states of a version on its way in or out: memory moves for a load.
LOADING_STATES = frozenset({"START", "LOADING", "UNLOADING"})


def loading_pods(
    spec: ModelServerSpec,
    model_states: Mapping[str, dict[str, list[VersionStatus]] | str],
    serving: dict[str, Configured],
    *,
    promoting: bool,
    lagging: Mapping[str, Any],
) -> frozenset[str]:
    """Pods whose memory growth is a model load, not evidence of a leak (the memory
    guard leaves it out): a version starting, loading or unloading; a promotion step
    under way on the fleet; a models.config change the pod has not applied yet
    (until the watchdog's budget runs out: a pod that never applies it is
    ConfigNotApplied, and its growth counts again)."""
    loading = set()
    for pod, answer in model_states.items():
        if not isinstance(answer, dict):
            continue
        if (
            promoting
            or any(v.state in LOADING_STATES for states in answer.values() for v in states)
            or (pod not in lagging and config_differences(spec, answer, serving))
        ):
            loading.add(pod)
    return frozenset(loading)
