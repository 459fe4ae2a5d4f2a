"""`tfops run`: the operator, until it is told to stop."""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tfops import config, metrics
from tfops.health import ApiHealth
from tfops.state import OperatorState

LOG_FORMATS = ("plain", "full", "json")
# A Kubernetes namespace name (an RFC 1123 label).
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class LeaderElection:
    namespace: str
    name: str = "tfops-leader"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


API_CHECK_SECONDS = 10.0


def watch_api(api: Any, health: ApiHealth, period: float = API_CHECK_SECONDS) -> None:
    """Ask the API server for its version every period, sooner (1 s, doubling)
    while it does not answer; /readyz reports the outcome."""
    from tfops.clients import kube

    log = logging.getLogger("tfops.health")
    delay = period
    while True:
        time.sleep(delay)
        try:
            kube.check_reachable(api, timeout=5.0)
        except kube.NoCluster as error:
            if delay == period:
                log.warning("Lost the API server, retrying: %s", error)
            health.failed(time.monotonic(), str(error))
            delay = 1.0 if delay == period else min(period, delay * 2)
            continue
        if delay != period:
            log.info("Reached the API server again")
        health.succeeded()
        delay = period


def run_operator(
    operator_config: config.OperatorConfig,
    *,
    liveness_endpoint: str | None,
    verbose: bool,
    log_format: str = "full",
    leader_election: LeaderElection | None = None,
) -> int:
    """Run the operator until it is told to stop (SIGINT/SIGTERM). With leader
    election, wait as a standby until this replica holds the Lease."""
    # Imported here so the other commands (and `tfops --help`) stay fast and light.
    import kopf

    from tfops.clients import kube

    state = OperatorState(config=operator_config)
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()])
    # Fail at once, in one line, when there is no cluster to talk to: the kubelet's
    # restart back-off (or the user) takes it from there.
    try:
        version = kube.check_reachable(kube.api_client())
    except kube.NoCluster as error:
        print(f"tfops run: {error}", file=sys.stderr)
        return 1
    logging.getLogger("tfops").info("Reached the API server (Kubernetes %s)", version)
    state.health.succeeded()
    threading.Thread(
        target=watch_api, args=(kube.api_client(), state.health), name="api-health", daemon=True
    ).start()
    # Served from the start, standbys included: the probes and the leader gauge.
    metrics.serve(operator_config.metrics_host, operator_config.metrics_port, state.health)
    metrics.LEADER.set(0)
    if leader_election is not None:
        from tfops.leader import LeaderElector

        elector = LeaderElector(
            kube.Leases(kube.api_client(), leader_election.namespace, leader_election.name),
            identity=leader_election.identity,
        )
        elector.acquire()
        elector.keep_renewing()
    metrics.LEADER.set(1)
    # Registers the handlers (importing them is what registers them with kopf).
    importlib.import_module("tfops.handlers")
    kopf.run(
        memo=state,
        standalone=True,
        clusterwide=not operator_config.namespaces,
        namespaces=list(operator_config.namespaces),
        liveness_endpoint=liveness_endpoint,
    )
    return 0


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="run the operator (kopf) against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; a name, not a pattern); all when omitted",
    )
    run.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    run.add_argument(
        "--serving-url-template",
        default=config.DEFAULT_SERVING_URL_TEMPLATE,
        metavar="TEMPLATE",
        help="where to reach a pod's TF Serving REST API, with {pod_ip}, {namespace} and "
        "{pod}; empty to skip model-state checks (default %(default)s)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=10.0,
        help="re-observe every ModelServer this often (default %(default)s)",
    )
    run.add_argument(
        "--model-status-timeout-seconds",
        type=float,
        default=2.0,
        help="how long a pod's TF Serving may take to answer a model-state ask before the "
        "pod counts as not answering (default %(default)s)",
    )
    run.add_argument("--metrics-host", default="0.0.0.0", help="metrics bind address")
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="metrics port, 0 for none (default 8080)"
    )
    run.add_argument(
        "--guard-checkpoint-seconds",
        type=float,
        default=300.0,
        help="save the memory guard's pod histories this often, so a restart of the "
        "operator keeps them (default %(default)s)",
    )
    run.add_argument(
        "--memory-source",
        choices=("metrics-server", "prometheus"),
        default="metrics-server",
        help="where the memory guard reads working sets: metrics.k8s.io, or Prometheus "
        "(container_memory_working_set_bytes, which also gives a pod's past at once) "
        "(default %(default)s)",
    )
    run.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus' base URL for --memory-source prometheus",
    )
    run.add_argument(
        "--max-leak-restarts-in-flight",
        type=int,
        default=2,
        metavar="N",
        help="leak restarts of different ModelServers at once: a restart counts until its "
        "fleet is ready again, so a leak in every image (a bad library) does not evict a pod "
        "of every fleet together (default %(default)s)",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: act only while holding the Lease tfops-leader",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=None,
        metavar="NAMESPACE",
        help="where the Lease lives (default: $POD_NAMESPACE, else default)",
    )
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="full",
        help="log lines: plain, full (with time and logger) or json (default %(default)s)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    operator_config = config.OperatorConfig(
        serving_url_template=args.serving_url_template,
        resync_seconds=args.resync_seconds,
        model_status_timeout_seconds=args.model_status_timeout_seconds,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        guard_checkpoint_seconds=args.guard_checkpoint_seconds,
        memory_source=args.memory_source,
        prometheus_url=args.prometheus_url or "",
        max_leak_restarts_in_flight=args.max_leak_restarts_in_flight,
        namespaces=tuple(args.namespace),
    )
    url_problem = config.serving_url_problem(args.serving_url_template)
    if url_problem:
        print(
            f"tfops run: --serving-url-template {args.serving_url_template!r}: {url_problem} "
            "(or '' to skip model-state checks)",
            file=sys.stderr,
        )
        return 2
    for namespace in args.namespace:
        if not NAMESPACE_NAME.fullmatch(namespace):
            print(
                f"tfops run: --namespace {namespace!r} is not a namespace name (lower-case "
                "letters, digits and '-', at most 63); repeat --namespace for each "
                "namespace, patterns are not supported",
                file=sys.stderr,
            )
            return 2
    for flag, seconds in (
        ("--resync-seconds", args.resync_seconds),
        ("--model-status-timeout-seconds", args.model_status_timeout_seconds),
        ("--guard-checkpoint-seconds", args.guard_checkpoint_seconds),
    ):
        if not 0 < seconds < math.inf:
            print(
                f"tfops run: {flag} {seconds:g} is not a duration: give a number of seconds "
                "above 0",
                file=sys.stderr,
            )
            return 2
    if args.max_leak_restarts_in_flight < 1:
        print(
            "tfops run: --max-leak-restarts-in-flight must be 1 or more (it caps leak "
            "restarts; use memoryGuard.mode: Alert on a ModelServer to restart none)",
            file=sys.stderr,
        )
        return 2
    if args.memory_source == "prometheus" and not args.prometheus_url:
        print(
            "tfops run: --memory-source prometheus needs --prometheus-url, e.g. "
            "http://prometheus.monitoring:9090",
            file=sys.stderr,
        )
        return 2
    election = None
    if args.leader_elect:
        namespace = args.leader_election_namespace or os.environ.get("POD_NAMESPACE", "default")
        election = LeaderElection(namespace)
    return run_operator(
        operator_config,
        liveness_endpoint=args.liveness,
        verbose=args.verbose,
        log_format=args.log_format,
        leader_election=election,
    )
