"""Kubernetes-style conditions: one per type, lastTransitionTime kept while the
status does not change (prometheus-operator, cert-manager)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown (tfops cannot tell)
    reason: str
    message: str


def merge_conditions(
    previous: list[dict[str, Any]] | None,
    current: list[Condition],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    old = {c.get("type"): c for c in previous or []}
    merged = []
    for condition in current:
        status = {True: "True", False: "False", None: "Unknown"}[condition.status]
        before = old.get(condition.type)
        changed = before is None or before.get("status") != status
        merged.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": now if changed else before["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    return merged
