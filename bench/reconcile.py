"""Reconcile benchmarks on the real local control plane, with baselines in the same run.

1. Latency: apply one ModelServer and wait until all its owned objects exist and
   status.observedGeneration is current; compared with a raw server-side apply of
   the same rendered objects by a client (the floor any operator could reach).
2. Scale, at each count (a fresh control plane per count): a raw client
   server-side applies the objects tfops would render for N ModelServers (2 pods,
   2 models each) and waits for their pods to be ready; the same objects with the
   pods' readiness gate kept, opened by a bare gate opener that asks TF Serving as
   tfops does (the gated floor: what the gate alone costs); then the operator, with
   model-state checks on, gets N ModelServers at once: time until every one (and
   half of them) has settled, its peak RSS, the resync cycle's duration, and API
   requests and RSS over idle resync cycles. One TF Serving stand-in answers for
   every pod; 2% of pods never answer and 2% answer after 1.5 s. Both sides wait
   on watches, not polled lists, so the measuring loads neither.

Usage: python -m bench.reconcile [--latency-count 50] [--scale-counts 100,300,1000]
       [--soak-cycles 30]   (results: bench/results/reconcile.{json,md})
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from bench.proc import high_water_kb
from tfops import readiness
from tfops.clients import kube
from tfops.clients.kube_watch import KindWatch
from tfops.clients.tfserving import ServingUnreachable, get_model_status
from tfops.devcluster import LocalCluster, find_control_plane
from tfops.model import GROUP, PLURAL, VERSION, parse_spec
from tfops.owned import BY_KIND
from tfops.plan import make_plan
from tfops.promotion import Configured
from tfops.render import Owner, render_all
from tfops.resync import EVENT_WORKERS
from tfops.testing.fleet import CRD_FILE, OperatorProcess, audit_writes
from tfops.testing.standin.server import TFServingStandIn
from tfops.testing.standin.tfserving import DirectoryLoader
from tfops.timefmt import now_iso
from tfops.watched import OWNED_SELECTOR, OwnedIndex

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "bench" / "results"
SPEC = {
    "replicas": 2,
    "models": [
        {
            "name": "ranker",
            "basePath": "gs://bench/ranker",
            "size": "64Mi",
            "versionPolicy": {"specific": [1, 2]},
            "versionLabels": {"stable": 1},
        },
        {"name": "scorer", "basePath": "gs://bench/scorer", "size": "64Mi"},
    ],
    "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "1"}},
}
STORE = {"bench/ranker": (1, 2), "bench/scorer": (1,)}
PODS_PER_FLEET = 2
PODS_PER_NODE = 250
# Pods that never answer (held past any time-out) and pods that answer late.
SILENT_PERCENT, SLOW_PERCENT = 2, 2
SILENT_SECONDS, SLOW_SECONDS = 30.0, 1.5


def pod_delay(namespace: str, pod: str) -> float:
    bucket = zlib.crc32(f"{namespace}/{pod}".encode()) % 100
    if bucket < SILENT_PERCENT:
        return SILENT_SECONDS
    if bucket < SILENT_PERCENT + SLOW_PERCENT:
        return SLOW_SECONDS
    return 0.0


@contextlib.contextmanager
def serving_standin(api: client.ApiClient) -> Iterator[TFServingStandIn]:
    """One TF Serving stand-in for every pod, loading SavedModel directories
    without TensorFlow."""
    with tempfile.TemporaryDirectory(prefix="tfops-bench-models-") as root:
        for base, versions in STORE.items():
            for version in versions:
                directory = Path(root) / "gs" / base / str(version)
                directory.mkdir(parents=True)
                (directory / "saved_model.pb").write_bytes(b"")
        standin = TFServingStandIn(
            api, Path(root), loader=DirectoryLoader(), delay=pod_delay
        ).start()
        try:
            yield standin
        finally:
            standin.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def create_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no default ServiceAccount in {name}")


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelServer",
        "metadata": {"name": name},
        "spec": SPEC,
    }


def raw_apply(api: client.ApiClient, namespace: str, name: str, *, gated: bool = False) -> float:
    """Server-side apply of the objects tfops renders, by a plain client (without
    the pods' readiness gate, which only the operator opens, unless `gated`)."""
    objects = render_all(Owner(name, namespace, "unused"), make_plan(parse_spec(SPEC)))
    started = time.perf_counter()
    for obj in objects:
        obj["metadata"].pop("ownerReferences")  # no owner exists for the baseline
        if obj["kind"] == "Deployment" and not gated:
            obj["spec"]["template"]["spec"].pop("readinessGates")
        kube.apply(api, obj)
    return time.perf_counter() - started


def tfops_apply(api: client.ApiClient, namespace: str, name: str) -> float:
    """Create a ModelServer; time until status.observedGeneration is current.
    Watched, not polled: polling would load the apiserver the baseline does not."""
    custom = client.CustomObjectsApi(api)
    started = time.perf_counter()
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, manifest(name)
    )
    generation = created["metadata"]["generation"]
    stream = watch.Watch()
    elapsed = None
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        field_selector=f"metadata.name={name}",
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=60,
    ):
        if (event["object"].get("status") or {}).get("observedGeneration") == generation:
            elapsed = time.perf_counter() - started
            stream.stop()
    if elapsed is None:
        raise RuntimeError(f"{name}: status.observedGeneration never became {generation}")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.read_namespaced_config_map(f"{name}-config", namespace)
    apps.read_namespaced_deployment(name, namespace)
    core.read_namespaced_service(name, namespace)
    client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(name, namespace)
    return elapsed


def latency(api: client.ApiClient, count: int) -> dict[str, Any]:
    create_namespace(api, "bench-raw")
    create_namespace(api, "bench-tfops")
    raw, ours = [], []
    # Interleaved, so both see the same cluster state and machine noise.
    for index in range(count):
        raw.append(raw_apply(api, "bench-raw", f"fleet-{index}"))
        ours.append(tfops_apply(api, "bench-tfops", f"fleet-{index}"))
    return {
        "count": count,
        "raw_apply_seconds": {"p50": statistics.median(raw), "p95": percentile(raw, 0.95)},
        "tfops_seconds": {"p50": statistics.median(ours), "p95": percentile(ours, 0.95)},
        "ratio_p50": statistics.median(ours) / statistics.median(raw),
        "ratio_p95": percentile(ours, 0.95) / percentile(raw, 0.95),
    }


def api_requests(operator: OperatorProcess) -> float:
    return sum(
        operator.metric("tfops_api_requests_total", method=method)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    )


class WatchedDeployments:
    """Which Deployments of a namespace have every pod ready, kept from a watch (the
    operator's own list-and-watch client): polling a list of a thousand
    Deployments twice a second was load on the API server the operator's run does
    not carry."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ready: dict[str, bool] = {}
        self.lock = threading.Lock()
        self.watch = KindWatch(
            api, BY_KIND["Deployment"], namespace, OWNED_SELECTOR, OwnedIndex(), self._see
        )
        self.watch.start()
        self.watch.listed.wait(30)

    def _see(self, event: str, obj: dict[str, Any], _previous: Any) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            if event == "DELETED":
                self.ready.pop(name, None)
            else:
                status = obj.get("status") or {}
                self.ready[name] = status.get("readyReplicas", 0) == PODS_PER_FLEET

    def count_ready(self) -> tuple[int, int]:
        """(Deployments seen, of which every pod is ready)."""
        with self.lock:
            return len(self.ready), sum(self.ready.values())


def raw_baseline(api: client.ApiClient, count: int) -> dict[str, float]:
    """What a plain client needs for the same objects: server-side apply of all of
    them (8 at once, as the operator does), then until every pod is ready."""
    namespace = "bench-raw"
    create_namespace(api, namespace)
    deployments = WatchedDeployments(api, namespace)
    try:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: raw_apply(api, namespace, f"fleet-{i}"), range(count)))
        applied = time.perf_counter() - started
        while deployments.count_ready() != (count, count):
            if time.perf_counter() - started > 900:
                raise RuntimeError("the raw baseline's pods were not all ready within 900 s")
            time.sleep(0.2)
        ready = time.perf_counter() - started
    finally:
        deployments.watch.stop()
    return {"raw_apply_requests_seconds": applied, "raw_apply_all_seconds": ready}


class GateOpener:
    """The least any operator with a readiness gate must do: watch the serving pods
    and, once a pod's TF Serving is up, ask it for each model (as tfops asks) and
    open the pod's gate when every model serves. No status, no Events, no resync of
    settled fleets: the floor under tfops's own settling, so what the gate costs the
    control plane is told apart from what the operator spends. A pod still loading
    is asked again after a moment, one that did not answer after a resync period (as
    tfops does): a worker held by each silent pod would starve the rest."""

    LOADING_RETRY_SECONDS = 0.5

    def __init__(
        self, api: client.ApiClient, namespace: str, url_template: str, resync: float
    ) -> None:
        self.url_template, self.resync = url_template, resync
        self.spec = parse_spec(SPEC)
        self.serving = {model.name: Configured.of(model) for model in self.spec.models}
        self.writer = kube.Writer(api)
        self.pool = concurrent.futures.ThreadPoolExecutor(EVENT_WORKERS)
        self.lock = threading.Lock()
        self.asking: set[str] = set()
        # pod -> (fleet, Ready); a silent pod counts as ready (its gate never opens,
        # and tfops's run settles such a fleet as Ready=False naming it).
        self.pods: dict[str, tuple[str, bool]] = {}
        self.stopped = threading.Event()
        self.watch = KindWatch(
            api, BY_KIND["Pod"], namespace, OWNED_SELECTOR, OwnedIndex(), self._see
        )
        self.watch.start()
        self.watch.listed.wait(30)

    def _see(self, event: str, pod: dict[str, Any], _previous: Any) -> None:
        name = pod["metadata"]["name"]
        conditions = {
            c.get("type"): c.get("status")
            for c in (pod.get("status") or {}).get("conditions") or []
        }
        silent = pod_delay(pod["metadata"]["namespace"], name) >= SILENT_SECONDS
        with self.lock:
            if event == "DELETED":
                self.pods.pop(name, None)
                return
            self.pods[name] = (fleet_of(name), silent or conditions.get("Ready") == "True")
            if not readiness.awaits_gate(pod) or name in self.asking:
                return
            self.asking.add(name)
        self.pool.submit(self._open, pod)

    def _open(self, pod: dict[str, Any]) -> None:
        if self.stopped.is_set():
            return
        meta = pod["metadata"]
        base = self.url_template.format(namespace=meta["namespace"], pod=meta["name"])
        answer: dict[str, list[Any]] | str = {}
        try:
            for model in self.spec.models:
                answer[model.name] = get_model_status(base, model.name)
        except ServingUnreachable as error:
            answer = str(error)
        gate = readiness.gate_for_pod(self.spec, answer, self.serving)
        if gate.status == "True":
            condition = readiness.gate_change(pod, gate, now_iso())
            if condition is not None:
                with contextlib.suppress(ApiException):  # the pod went away
                    self.writer.set_pod_condition(meta["namespace"], meta["name"], condition)
            return
        retry = self.resync if isinstance(answer, str) else self.LOADING_RETRY_SECONDS
        timer = threading.Timer(retry, self._resubmit, (pod,))
        timer.daemon = True
        timer.start()

    def _resubmit(self, pod: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the pool was shut down
            self.pool.submit(self._open, pod)

    def count_ready(self) -> tuple[int, int]:
        """(fleets seen, of which every pod is ready)."""
        with self.lock:
            pods = list(self.pods.values())
        fleets: dict[str, list[bool]] = collections.defaultdict(list)
        for fleet, ready in pods:
            fleets[fleet].append(ready)
        return len(fleets), sum(
            len(ready) == PODS_PER_FLEET and all(ready) for ready in fleets.values()
        )

    def stop(self) -> None:
        self.stopped.set()
        self.watch.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)


def gated_floor(
    api: client.ApiClient, standin: TFServingStandIn, count: int, resync: float
) -> dict[str, Any]:
    """The raw client's objects with the pods' readiness gate kept, opened by a
    GateOpener: until every fleet's pods are ready."""
    namespace = "bench-gated"
    create_namespace(api, namespace)
    opener = GateOpener(api, namespace, standin.url_template, resync)
    try:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: raw_apply(api, namespace, f"fleet-{i}", gated=True), range(count)
                )
            )
        while opener.count_ready() != (count, count):
            if time.perf_counter() - started > 900:
                raise RuntimeError("the gated floor's pods were not all ready within 900 s")
            time.sleep(0.2)
        return {"gated_floor_all_seconds": time.perf_counter() - started}
    finally:
        opener.stop()


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) so far of this process (the benchmark's client and
    the stand-in) and of every process it started (the control plane, the operator),
    by name. On a saturated machine the time to settle follows the CPU every
    component spends, so both sides report it."""
    me = psutil.Process()
    totals: collections.Counter[str] = collections.Counter()
    for process in [me, *me.children(recursive=True)]:
        try:
            with process.oneshot():
                times = process.cpu_times()
                name = process.name()
                if process.pid == me.pid:
                    name = "benchmark+stand-in"
                elif name.startswith("python"):  # the one Python child: `tfops run`
                    name = "operator"
        except psutil.Error:  # ended meanwhile
            continue
        totals[name] += times.user + times.system
    return dict(totals)


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: round(seconds - before.get(name, 0.0), 1)
        for name, seconds in sorted(after.items())
        if seconds - before.get(name, 0.0) >= 0.05
    }


def fleet_of(pod: str) -> str:
    """The ModelServer (its Deployment) a serving pod belongs to, from the pod's
    name: <deployment>-<pod-template-hash>-<suffix>."""
    return pod.rsplit("-", 2)[0]


class Settled:
    """Counts settled ModelServers: status current and Ready, or, for a fleet with a
    pod that never answers, Ready=False naming that (ModelStatusUnknown): the
    verdict a real cluster would get. Kept from a watch of the ModelServers, and the
    silent pods from the stand-in's own view of the pods: listing a thousand
    ModelServers every 2 s, and thousands of pods until all existed, was load on
    the API server (and on the process the stand-in runs in) that the baseline
    does not carry."""

    def __init__(
        self, api: client.ApiClient, namespace: str, count: int, standin: TFServingStandIn
    ) -> None:
        self.api, self.namespace, self.count, self.standin = api, namespace, count, standin
        # name -> (status current, Ready's status, Ready's reason)
        self.verdicts: dict[str, tuple[bool, str, str]] = {}
        self.settled_at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _see(self, event: str, item: dict[str, Any]) -> None:
        name = item["metadata"]["name"]
        status = item.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        with self.lock:
            if event == "DELETED":
                self.verdicts.pop(name, None)
                return
            self.verdicts[name] = (
                status.get("observedGeneration") == item["metadata"]["generation"],
                ready.get("status", ""),
                ready.get("reason", ""),
            )

    def _watch(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        version = ""
        while not self.stopped.is_set():
            try:
                if not version:
                    listed = custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )
                    for item in listed["items"]:
                        self._see("ADDED", item)
                    version = listed["metadata"]["resourceVersion"]
                for event in watch.Watch().stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=60,
                ):
                    if event["type"] == "ERROR":
                        raise ApiException(status=event["raw_object"].get("code"))
                    version = event["object"]["metadata"]["resourceVersion"]
                    self._see(event["type"], event["object"])
                    if self.stopped.is_set():
                        return
            except ApiException as error:
                if error.status == 410:
                    version = ""  # expired: list again
                self.stopped.wait(0.5)
            except (OSError, urllib3.exceptions.HTTPError):
                self.stopped.wait(0.5)  # the API server went away (the run's end)

    def silent_fleets(self) -> set[str]:
        with self.standin.lock:
            pods = list(self.standin.pods)
        return {
            fleet_of(pod)
            for namespace, pod in pods
            if namespace == self.namespace and pod_delay(namespace, pod) >= SILENT_SECONDS
        }

    def __call__(self) -> tuple[int, int]:
        """(ModelServers settled, of which Ready); each one's first settled moment is
        kept in `settled_at` (perf_counter)."""
        with self.lock:
            verdicts = dict(self.verdicts)
        silent = self.silent_fleets()
        now = time.perf_counter()
        done = ready = 0
        for name, (current, status, reason) in verdicts.items():
            if not current:
                continue
            if name in silent:
                settled = reason == "ModelStatusUnknown"
            else:
                settled = status == "True"
                ready += settled
            if settled:
                done += 1
                self.settled_at.setdefault(name, now)
        if len(verdicts) != self.count:
            return 0, 0
        return done, ready

    def stop(self) -> None:
        self.stopped.set()


def scale(
    *,
    cluster: LocalCluster,
    api: client.ApiClient,
    standin: TFServingStandIn,
    count: int,
    soak_cycles: int,
    resync: float,
) -> dict[str, Any]:
    namespace = "bench-scale"
    create_namespace(api, namespace)
    custom = client.CustomObjectsApi(api)
    settled = Settled(api, namespace, count, standin)
    with OperatorProcess.start(cluster, standin.url_template, resync_seconds=resync) as operator:
        process = psutil.Process(operator.process.pid)
        time.sleep(resync)  # started and idle
        rss_before = process.memory_info().rss
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, manifest(f"fleet-{i}")
                    ),
                    range(count),
                )
            )
        created = time.perf_counter() - started
        peak = rss_before
        while True:
            peak = max(peak, process.memory_info().rss)
            done, ready = settled()
            if done == count:
                break
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"only {done} of {count} ModelServers settled within 900 s")
            time.sleep(0.5)  # no API request: the watch keeps the count
        settled_after = time.perf_counter() - started
        cpu = cpu_spent(cpu_before, cpu_seconds())
        settled.stop()

        # Idle: every ModelServer is re-observed each resync; nothing should be written.
        time.sleep(3 * resync)
        since = time.time()
        cycles_before = operator.metric("tfops_resync_cycle_duration_seconds_count")
        cycle_seconds_before = operator.metric("tfops_resync_cycle_duration_seconds_sum")
        requests_before = api_requests(operator)
        samples, lags = [], []
        soak_started = time.perf_counter()
        while time.perf_counter() - soak_started < soak_cycles * resync:
            samples.append(process.memory_info().rss)
            lags.append(operator.metric("tfops_resync_lag_seconds"))
            time.sleep(resync / 2)
        cycles = operator.metric("tfops_resync_cycle_duration_seconds_count") - cycles_before
        cycle_seconds = (
            operator.metric("tfops_resync_cycle_duration_seconds_sum") - cycle_seconds_before
        )
        requests = api_requests(operator) - requests_before
        reconciles = operator.metric("tfops_reconciles_total", trigger="resync", result="ok")
        high_water = high_water_kb(operator.process.pid) * 1024
    writes = audit_writes(cluster, namespace, since)
    first = statistics.mean(samples[: max(1, len(samples) // 10)])
    last = statistics.mean(samples[-max(1, len(samples) // 10) :])
    rss_peak = max(peak, high_water, *samples)
    return {
        "count": count,
        "pods_per_modelserver": PODS_PER_FLEET,
        "models_per_modelserver": len(SPEC["models"]),
        "model_state_checks": True,
        "silent_pods_percent": SILENT_PERCENT,
        "slow_pods_percent": SLOW_PERCENT,
        "slow_pod_answer_seconds": SLOW_SECONDS,
        "create_seconds": created,
        "all_ready_seconds": settled_after,
        # When half of them were: a fleet's Ready held behind the rest of the burst
        # shows here, not in the time the last one took.
        "half_settled_seconds": statistics.median(settled.settled_at.values()) - started,
        "ready_modelservers": ready,
        # Until all had settled, by process (the baseline's: raw_cpu_seconds).
        "cpu_seconds": cpu,
        "rss_idle_before_mb": rss_before / 2**20,
        "rss_peak_mb": rss_peak / 2**20,
        "rss_per_modelserver_mb": (rss_peak - rss_before) / 2**20 / count,
        "resync_period_seconds": resync,
        "resync_cycle_seconds": cycle_seconds / cycles if cycles else float("inf"),
        "resync_lag_max_seconds": max(lags),
        "soak_cycles": cycles,
        "resync_reconciles_total": reconciles,
        "api_requests_per_resync": requests / cycles if cycles else float("inf"),
        "rss_soak_start_mb": first / 2**20,
        "rss_soak_end_mb": last / 2**20,
        "rss_soak_drift_percent": 100 * (last - first) / first,
        "idle_write_requests": len(writes),
        # What they were, so a non-zero count can be told apart.
        "idle_writes_by_kind": write_kinds(writes),
        "idle_writes": write_details(api, namespace, writes),
    }


def write_kinds(writes: list[dict[str, Any]]) -> dict[str, int]:
    """Audited writes counted by "verb resource[/subresource]"."""
    kinds: collections.Counter[str] = collections.Counter()
    for write in writes:
        ref = write.get("objectRef") or {}
        what = "/".join(part for part in (ref.get("resource"), ref.get("subresource")) if part)
        kinds[f"{write.get('verb')} {what}"] += 1
    return dict(kinds)


def write_details(
    api: client.ApiClient, namespace: str, writes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What each write was, and for a ModelServer's status its conditions now: the
    audit log keeps no bodies, and a write while idle is a bug to find."""
    custom = client.CustomObjectsApi(api)
    details = []
    for write in writes[:20]:
        ref = write.get("objectRef") or {}
        detail: dict[str, Any] = {
            "at": write.get("requestReceivedTimestamp"),
            "what": next(iter(write_kinds([write]))),
            "name": ref.get("name"),
        }
        if ref.get("resource") == PLURAL and ref.get("name"):
            with contextlib.suppress(ApiException):
                body = custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, ref["name"]
                )
                detail["conditions_now"] = (body.get("status") or {}).get("conditions")
        details.append(detail)
    return details


def local_cluster(count: int) -> LocalCluster:
    # Each serving pod requests 896 Mi (the plan's memory for SPEC) and a kwok node
    # has 256 Gi: about 290 pods per node. With 3 nodes, 1000 fleets left half
    # their pods unschedulable.
    nodes = max(3, -(-count * PODS_PER_FLEET // PODS_PER_NODE))
    return LocalCluster(
        find_control_plane(),
        nodes=nodes,
        pods_per_node=count * PODS_PER_FLEET // nodes + 50,
        log=lambda m: print(m, flush=True),
    )


def scale_point(count: int, soak_cycles: int, resync: float) -> dict[str, Any]:
    """One count: the raw baseline, the gated floor and the operator, each on a
    fresh control plane (emptying a namespace of thousands of pods takes longer
    than starting one)."""
    with local_cluster(count) as cluster:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        print(f"scale {count}: raw baseline...", flush=True)
        cpu_before = cpu_seconds()
        baseline: dict[str, Any] = raw_baseline(api, count)
        baseline["raw_cpu_seconds"] = cpu_spent(cpu_before, cpu_seconds())
    with local_cluster(count) as cluster:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        with serving_standin(api) as standin:
            print(f"scale {count}: gated floor...", flush=True)
            cpu_before = cpu_seconds()
            baseline.update(gated_floor(api, standin, count, resync))
            baseline["gated_cpu_seconds"] = cpu_spent(cpu_before, cpu_seconds())
    with local_cluster(count) as cluster:
        cluster.install_crd(CRD_FILE, f"{PLURAL}.{GROUP}")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        with serving_standin(api) as standin:
            print(f"scale {count}: operator...", flush=True)
            result = scale(
                cluster=cluster,
                api=api,
                standin=standin,
                count=count,
                soak_cycles=soak_cycles,
                resync=resync,
            )
    result.update(baseline)
    result["ready_over_raw_apply"] = result["all_ready_seconds"] / result["raw_apply_all_seconds"]
    result["gated_floor_over_raw_apply"] = (
        result["gated_floor_all_seconds"] / result["raw_apply_all_seconds"]
    )
    result["ready_over_gated_floor"] = (
        result["all_ready_seconds"] / result["gated_floor_all_seconds"]
    )
    result["cpu_over_raw"] = sum(result["cpu_seconds"].values()) / sum(
        result["raw_cpu_seconds"].values()
    )
    print(json.dumps(result, indent=1), flush=True)
    return result


def machine() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "python": platform.python_version(),
    }


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reconcile.json").write_text(json.dumps(results, indent=2) + "\n")
    lat, runs = results["latency"], results["scale"]
    big = runs[-1]
    lines = [
        f"# Reconcile benchmark ({results['date']})",
        "",
        f"Machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['memory_gb']} GB; everything (control plane, operator, TF "
        "Serving stand-in, benchmark client) on it.",
        "",
        "| measure | value | budget |",
        "| --- | --- | --- |",
        f"| apply -> owned objects + observedGeneration, p50 ({lat['count']} ModelServers) | "
        f"{lat['tfops_seconds']['p50'] * 1000:.0f} ms | |",
        f"| raw server-side apply of the same objects, p50 | "
        f"{lat['raw_apply_seconds']['p50'] * 1000:.0f} ms | |",
        f"| ratio p50 / p95 | {lat['ratio_p50']:.2f}x / {lat['ratio_p95']:.2f}x | <= 1.5x (p50) |",
        f"| {big['count']} ModelServers -> all settled / raw apply + pods ready | "
        f"{big['all_ready_seconds']:.0f} s / {big['raw_apply_all_seconds']:.0f} s = "
        f"{big['ready_over_raw_apply']:.2f}x | <= 1.5x |",
        f"| the same, against the raw client's objects with the readiness gate kept and "
        f"opened by a bare gate opener | {big['all_ready_seconds']:.0f} s / "
        f"{big['gated_floor_all_seconds']:.0f} s = {big['ready_over_gated_floor']:.2f}x | |",
        f"| resync cycle, {big['count']} ModelServers, model states on | "
        f"{big['resync_cycle_seconds']:.1f} s | < {big['resync_period_seconds']:g} s |",
        f"| operator RSS, peak ({big['count']} ModelServers) | {big['rss_peak_mb']:.0f} MB "
        f"({big['rss_per_modelserver_mb']:.2f} MB per ModelServer above idle) | <= 200 MB |",
        f"| RSS drift over {big['soak_cycles']:.0f} idle resync cycles | "
        f"{big['rss_soak_drift_percent']:+.1f}% ({big['rss_soak_start_mb']:.0f} -> "
        f"{big['rss_soak_end_mb']:.0f} MB) | within +-5% |",
        f"| write requests while idle ({big['resync_reconciles_total']:.0f} resyncs) | "
        f"{big['idle_write_requests']} | 0 |",
        "",
        "How cost grows (2 pods x 2 models per ModelServer; 2% of pods never answer, "
        f"2% answer after {SLOW_SECONDS:g} s):",
        "",
        "| ModelServers | all settled (half) | raw apply / + pods ready | ratio | "
        "gated floor (ratio to raw) | ours over the floor | "
        "CPU-seconds spent: ours / floor's / raw's | peak RSS | "
        "resync cycle | API requests per resync | idle writes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        ours, floor, theirs = (
            sum(run[key].values())
            for key in ("cpu_seconds", "gated_cpu_seconds", "raw_cpu_seconds")
        )
        lines.append(
            f"| {run['count']} | {run['all_ready_seconds']:.1f} s "
            f"({run['half_settled_seconds']:.1f} s) | "
            f"{run['raw_apply_requests_seconds']:.1f} s / {run['raw_apply_all_seconds']:.1f} s | "
            f"{run['ready_over_raw_apply']:.2f}x | {run['gated_floor_all_seconds']:.1f} s "
            f"({run['gated_floor_over_raw_apply']:.2f}x) | {run['ready_over_gated_floor']:.2f}x | "
            f"{ours:.0f} / {floor:.0f} / {theirs:.0f} "
            f"({run['cpu_over_raw']:.2f}x) | {run['rss_peak_mb']:.0f} MB | "
            f"{run['resync_cycle_seconds']:.2f} s | {run['api_requests_per_resync']:.1f} | "
            f"{run['idle_write_requests']} |"
        )
    lines += [
        "",
        f"CPU-seconds by process until all {big['count']} had settled (the floor's and "
        "the raw client's until every pod was ready; the gate opener runs in the "
        "benchmark's process):",
        "",
        "| process | ours | gated floor's | raw client's |",
        "| --- | --- | --- | --- |",
    ]
    for name in sorted(
        big["cpu_seconds"].keys() | big["raw_cpu_seconds"].keys(),
        key=lambda name: -big["cpu_seconds"].get(name, 0.0),
    ):
        lines.append(
            f"| {name} | {big['cpu_seconds'].get(name, 0.0):.1f} | "
            f"{big['gated_cpu_seconds'].get(name, 0.0):.1f} | "
            f"{big['raw_cpu_seconds'].get(name, 0.0):.1f} |"
        )
    (RESULTS / "reconcile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def latency_run(count: int) -> dict[str, Any]:
    with LocalCluster(
        find_control_plane(), nodes=3, pods_per_node=count, log=lambda m: print(m, flush=True)
    ) as cluster:
        cluster.install_crd(CRD_FILE, f"{PLURAL}.{GROUP}")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        with (
            serving_standin(api) as standin,
            OperatorProcess.start(cluster, standin.url_template, resync_seconds=10.0),
        ):
            print("latency...", flush=True)
            result = latency(api, count)
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-count", type=int, default=50)
    parser.add_argument("--scale-counts", default="100,300,1000")
    parser.add_argument("--soak-cycles", type=int, default=30)
    parser.add_argument("--resync-seconds", type=float, default=10.0)
    args = parser.parse_args()

    latency_results = latency_run(args.latency_count)
    scale_results: list[dict[str, Any]] = []
    for count in args.scale_counts.split(","):
        scale_results.append(scale_point(int(count), args.soak_cycles, args.resync_seconds))
        # After each count, so a later failure keeps what was measured.
        write_results(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "latency": latency_results,
                "scale": scale_results,
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
