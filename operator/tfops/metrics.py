"""The operator's own Prometheus metrics. Names: tfops_ prefix, units in the name."""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from tfops.health import ApiHealth
from tfops.memory.detector import Verdict

RECONCILES = Counter(
    "tfops_reconciles_total",
    "ModelServer reconciliations, by trigger and result.",
    ["trigger", "result"],
)
RECONCILE_SECONDS = Histogram(
    "tfops_reconcile_duration_seconds",
    "Time to reconcile one ModelServer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
APPLIES = Counter(
    "tfops_applies_total",
    "Owned objects written with server-side apply, by kind and reason.",
    ["kind", "reason"],
)
INVALID_SPECS = Counter(
    "tfops_invalid_specs_total",
    "Specs refused (Ready=False, reason InvalidSpec).",
)
OOM_KILLS = Counter(
    "tfops_oom_kills_total",
    "Serving containers OOM-killed, by ModelServer.",
    ["namespace", "modelserver"],
)
READY = Gauge(
    "tfops_modelserver_ready",
    "1 when the ModelServer's Ready condition is True.",
    ["namespace", "modelserver"],
)
RESYNC_CYCLE_SECONDS = Histogram(
    "tfops_resync_cycle_duration_seconds",
    "Time to re-observe every ModelServer once (drift, model states, status).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80),
)
RESYNC_LAG = Gauge(
    "tfops_resync_lag_seconds",
    "How late the latest resync cycle started against its period (0 when on time): "
    "above 0, cycles take longer than the period and every fleet's status ages.",
)
RESYNC_FLEETS = Gauge(
    "tfops_resync_fleets",
    "ModelServers re-observed by the latest resync cycle.",
)
API_REQUESTS = Counter(
    "tfops_api_requests_total",
    "Requests to the Kubernetes API by the operator's client, by method (kopf's "
    "watches are apart).",
    ["method"],
)
EVENTS_DROPPED = Counter(
    "tfops_events_dropped_total",
    "Events not posted because too many were waiting (the API server far behind).",
)
LEADER = Gauge(
    "tfops_leader",
    "1 while this replica acts (holds the leader Lease, or runs without leader election); "
    "0 while it waits as a standby.",
)
PROMOTION_FAILURES = Counter(
    "tfops_promotion_failures_total",
    "Version changes rolled back (a new version failed to load or was late) or refused "
    "(the pods' memory limit cannot hold old and new side by side).",
    ["namespace", "modelserver", "model"],
)
LEAK_VERDICTS = Counter(
    "tfops_leak_verdicts_total",
    "Pods newly judged to be leaking, by ModelServer.",
    ["namespace", "modelserver"],
)
LEAK_RESTARTS = Counter(
    "tfops_leak_restarts_total",
    "Leaking pods restarted by the memory guard.",
    ["namespace", "modelserver"],
)
CONFIG_RESTARTS = Counter(
    "tfops_config_not_applied_restarts_total",
    "Pods restarted because they did not apply models.config "
    "(spec.traffic.restartWhenConfigNotApplied).",
    ["namespace", "modelserver"],
)
MEMORY_SLOPE = Gauge(
    "tfops_memory_slope_bytes_per_second",
    "Rise of a serving pod's memory floor while it is judged to be leaking (0 otherwise).",
    ["namespace", "pod"],
)
SECONDS_TO_OOM = Gauge(
    "tfops_memory_projected_oom_seconds",
    "Projected seconds until a leaking pod reaches its memory limit (+Inf when not leaking).",
    ["namespace", "pod"],
)


def observe_verdict(namespace: str, pod: str, verdict: Verdict) -> None:
    MEMORY_SLOPE.labels(namespace, pod).set(verdict.slope)
    SECONDS_TO_OOM.labels(namespace, pod).set(
        float("inf") if verdict.seconds_to_limit is None else verdict.seconds_to_limit
    )


def forget_pod(namespace: str, pod: str) -> None:
    for gauge in (MEMORY_SLOPE, SECONDS_TO_OOM):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, pod)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the operator's log."""


def app(health: ApiHealth) -> Callable[..., Iterable[bytes]]:
    """/metrics (and any other path, as prometheus_client serves), /livez: the
    process answers, /readyz: it can reach the API server (503 with why not)."""
    metrics_app = make_wsgi_app()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            readiness = health.readiness(time.monotonic())
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain")])
            return [f"{readiness.reason}\n".encode()]
        return metrics_app(environ, start_response)

    return serve


def serve(host: str, port: int, health: ApiHealth) -> None:
    if not port:
        return
    server = make_server(host, port, app(health), _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
