"""Operator settings (not part of any ModelServer): flags of `tfops run`."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SERVING_URL_TEMPLATE = "http://{pod_ip}:8501"
SERVING_URL_FIELDS = ("pod_ip", "namespace", "pod")


def serving_url_problem(template: str) -> str | None:
    """What is wrong with a --serving-url-template, or None (empty is fine: no
    model-state checks). Checked at start-up: a bad one would otherwise fail every
    fleet's reconcile, one by one."""
    if not template:
        return None
    fields = "write {pod_ip}, {namespace} or {pod}, and {{ or }} for a literal brace"
    try:
        url = template.format(**{field: "x" for field in SERVING_URL_FIELDS})
    except KeyError as error:
        return f"{{{error.args[0]}}} is not a field it can use: {fields}"
    except IndexError:
        return f"a numbered field ({{}} or {{0}}) is not one it can use: {fields}"
    except ValueError as error:  # a lone brace, a bad format spec
        return f"{error}: {fields}"
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest.split("/", 1)[0]:
        return "it must be an http:// or https:// URL with a host, e.g. http://{pod_ip}:8501"
    return None


@dataclass(frozen=True)
class OperatorConfig:
    # Where the operator reaches a pod's TF Serving REST API. Fields: {pod_ip},
    # {namespace}, {pod}. Empty: do not check model states (Ready then means
    # "pods ready"). Tests point it at a loopback stand-in.
    serving_url_template: str = DEFAULT_SERVING_URL_TEMPLATE
    # How often every ModelServer is re-observed: drift, model states, status.
    resync_seconds: float = 10.0
    # How long a pod's TF Serving may take to answer a model-state ask.
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
