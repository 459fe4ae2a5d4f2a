"""kopf registration and startup settings: nothing else lives here."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from tfops import config, metrics
from tfops.health import ApiHealth
from tfops.model import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    """Set every kopf setting we rely on explicitly, under our own names."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Both in status (status.tfops), so kopf's closing write after a change is the
    # one status patch that also carries ours: annotations would cost a second
    # request on every create and update.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="tfops")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="tfops")
    # Watches have silently stopped for kopf users (kopf#585, #955): reconnect
    # on the server's side well before any proxy idles the stream out.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 60
    # tfops posts its own Events (one per action, with the fix in the message);
    # kopf turns only handler errors from the log into Events.
    settings.posting.level = logging.ERROR
    # Handlers are synchronous (the official client is): they run in this pool.
    settings.execution.max_workers = 16
    current = config.current()
    logger.info(
        "Started tfops with resync every %ss, model states from %s",
        current.resync_seconds,
        current.serving_url_template or "(not checked)",
    )


LOG_FORMATS = {
    "plain": kopf.LogFormat.PLAIN,
    "full": kopf.LogFormat.FULL,
    "json": kopf.LogFormat.JSON,
}


@dataclass(frozen=True)
class LeaderElection:
    namespace: str
    name: str = "tfops-leader"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


API_CHECK_SECONDS = 10.0


def watch_api(api: Any, health: ApiHealth, period: float = API_CHECK_SECONDS) -> None:
    """Ask the API server for its version every period, sooner (1 s, doubling)
    while it does not answer; /readyz reports the outcome."""
    from tfops import kube

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
    namespaces: Sequence[str],
    liveness_endpoint: str | None,
    verbose: bool,
    log_format: str = "full",
    leader_election: LeaderElection | None = None,
) -> int:
    """Run the operator until it is told to stop (SIGINT/SIGTERM). With leader
    election, wait as a standby until this replica holds the Lease."""
    from tfops import kube

    config.configure(operator_config)
    kopf.configure(verbose=verbose, log_format=LOG_FORMATS[log_format])
    # Fail at once, in one line, when there is no cluster to talk to: the kubelet's
    # restart back-off (or the user) takes it from there.
    try:
        version = kube.check_reachable(kube.api_client())
    except kube.NoCluster as error:
        print(f"tfops run: {error}", file=sys.stderr)
        return 1
    logging.getLogger("tfops").info("Reached the API server (Kubernetes %s)", version)
    health = ApiHealth()
    health.succeeded()
    threading.Thread(
        target=watch_api, args=(kube.api_client(), health), name="api-health", daemon=True
    ).start()
    # Served from the start, standbys included: the probes and the leader gauge.
    metrics.serve(operator_config.metrics_host, operator_config.metrics_port, health)
    metrics.LEADER.set(0)
    if leader_election is not None:
        from tfops.leader import LeaderElector

        elector = LeaderElector(
            kube.api_client(),
            namespace=leader_election.namespace,
            name=leader_election.name,
            identity=leader_election.identity,
        )
        elector.acquire()
        elector.keep_renewing()
    metrics.LEADER.set(1)
    # Registers the handlers; their timers read the configuration at import.
    importlib.import_module("tfops.handlers.modelserver")
    importlib.import_module("tfops.handlers.memoryguard")
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
    return 0
