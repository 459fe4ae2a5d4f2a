"""The Service clients use: gRPC on 8500, REST (and metrics) on 8501; and, on
request, a headless one listing the ready pods for client-side balancing."""

from __future__ import annotations

from typing import Any

from tfops.owned import headless_service_name
from tfops.render.common import GRPC_PORT, REST_PORT, Owner, metadata, selector_labels


def render_service(owner: Owner, *, headless: bool = False) -> dict[str, Any]:
    """The fleet's Service; `headless`: the one whose DNS name resolves to every
    ready pod (not-ready ones, readiness gate included, are left out as the
    ClusterIP Service leaves them out)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, headless_service_name(owner.name) if headless else owner.name),
        "spec": {
            "type": "ClusterIP",
            **({"clusterIP": "None", "publishNotReadyAddresses": False} if headless else {}),
            "selector": selector_labels(owner),
            "ports": [
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
                {
                    "name": "http",
                    "port": REST_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
            ],
        },
    }
