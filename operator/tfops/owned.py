"""The kinds of object a ModelServer owns, declared once: their API resource, the
name each gets, the watch-fed index that holds them and the RBAC verbs tfops needs.
The API client, the indexes, the renderers' names and the chart's RBAC rules
(generated: charts/tfops/templates/_owned.tpl) all derive from this table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Written by server-side apply (create or patch), and watched.
APPLY_VERBS = ("get", "list", "watch", "create", "patch")


@dataclass(frozen=True)
class OwnedKind:
    kind: str
    api_version: str  # "v1", "apps/v1", ...
    plural: str
    # The object's name, from the ModelServer's name.
    name: Callable[[str], str]
    verbs: tuple[str, ...] = APPLY_VERBS
    why: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def api_prefix(self) -> str:
        """Where the API serves this kind: /api/v1 for the core group, else
        /apis/<group>/<version>."""
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"

    @property
    def index(self) -> str:
        """The name of the index (tfops.watched) holding these objects by owner."""
        return f"tfops_{self.plural}"


def config_map_name(owner_name: str) -> str:
    return f"{owner_name}-config"


def _same_name(owner_name: str) -> str:
    return owner_name


def headless_service_name(owner_name: str) -> str:
    return f"{owner_name}-headless"


OWNED_KINDS: tuple[OwnedKind, ...] = (
    OwnedKind("ConfigMap", "v1", "configmaps", config_map_name, why="models.config and friends"),
    OwnedKind("Deployment", "apps/v1", "deployments", _same_name, why="the serving pods"),
    OwnedKind(
        "Service",
        "v1",
        "services",
        _same_name,
        (*APPLY_VERBS, "delete"),
        why="gRPC and REST; the headless one is deleted when turned off",
    ),
    OwnedKind("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", _same_name),
    OwnedKind(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        "horizontalpodautoscalers",
        _same_name,
        (*APPLY_VERBS, "delete"),
        why="deleted when autoscaling is turned off",
    ),
)

# Watched too, never written: the serving pods (labelled by the Deployment's template).
PODS = OwnedKind("Pod", "v1", "pods", _same_name, ("list", "watch"))
WATCHED_KINDS: tuple[OwnedKind, ...] = (*OWNED_KINDS, PODS)
BY_KIND = {owned.kind: owned for owned in WATCHED_KINDS}


def owned_object_names(owner_name: str) -> dict[str, str]:
    """Kind -> name of the one object of each kind every ModelServer may own."""
    return {owned.kind: owned.name(owner_name) for owned in OWNED_KINDS}


def optional_objects(owner_name: str) -> tuple[tuple[str, str], ...]:
    """(kind, name) of the objects a spec may turn off: deleted when not rendered."""
    return (
        ("HorizontalPodAutoscaler", owned_object_names(owner_name)["HorizontalPodAutoscaler"]),
        ("Service", headless_service_name(owner_name)),
    )


def rbac_rules() -> list[dict[str, object]]:
    """The RBAC rules for the owned kinds, one per kind."""
    return [
        {"apiGroups": [owned.group], "resources": [owned.plural], "verbs": list(owned.verbs)}
        for owned in OWNED_KINDS
    ]
