"""Operator settings (not part of any ModelServer): flags of `tfops run`."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SERVING_URL_TEMPLATE = "http://{pod_ip}:8501"


@dataclass(frozen=True)
class OperatorConfig:
    # Where the operator reaches a pod's TF Serving REST API. Fields: {pod_ip},
    # {namespace}, {pod}. Empty: do not check model states (Ready then means
    # "pods ready"). Tests point it at a loopback stand-in.
    serving_url_template: str = DEFAULT_SERVING_URL_TEMPLATE
    # How often every ModelServer is re-observed: drift, model states, status.
    resync_seconds: float = 10.0
    model_status_timeout_seconds: float = 2.0
    # Prometheus metrics of the operator; port 0 turns them off.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    # How often the memory guard saves each fleet's pod histories (one ConfigMap
    # write per ModelServer), so an operator restart does not forget a leak.
    guard_checkpoint_seconds: float = 300.0
    # Where the memory guard reads working sets: "metrics-server" (metrics.k8s.io)
    # or "prometheus" (container_memory_working_set_bytes at prometheus_url, which
    # also gives a pod's past at once).
    memory_source: str = "metrics-server"
    # Leak restarts of different ModelServers in flight at once (a leak in every
    # image must not evict a pod of every fleet together).
    max_leak_restarts_in_flight: int = 2
    prometheus_url: str = ""
    # Where ModelServers (and what they own) are watched; empty: every namespace.
    namespaces: tuple[str, ...] = ()
