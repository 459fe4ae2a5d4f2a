"""Names, labels and ownership shared by every rendered object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfops.model import GROUP, KIND, VERSION

MANAGED_BY = "tfops"
OWNER_LABEL = f"{GROUP}/modelserver"
GRPC_PORT = 8500
REST_PORT = 8501
CONFIG_DIR = "/etc/tfops"
CONTAINER_NAME = "tensorflow-serving"
# The pods' readiness gate, set by the operator (tfops.readiness).
READINESS_CONDITION = f"{GROUP}/models-ready"


@dataclass(frozen=True)
class Owner:
    """The ModelServer an object belongs to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector_labels(owner: Owner) -> dict[str, str]:
    # Immutable in a Deployment: keep it to the one label that identifies the fleet.
    return {OWNER_LABEL: owner.name}


def labels(owner: Owner) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tensorflow-serving",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(owner),
    }


def metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner),
        "ownerReferences": [owner.reference()],
    }
