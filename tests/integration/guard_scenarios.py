"""The memory guard's end-to-end scenarios. A leak takes minutes of real time to
show, so they run on a control plane of their own, started with the first
integration test and checked by tests/integration/test_memory_guard.py at the
end of the session (the other tests run meanwhile).

- `pair`: two replicas, kwok drives one pod's working set up 60 MiB/min and the
  other's in a healthy sawtooth.
- `single`: one replica; every pod in the namespace leaks (a ClusterResourceUsage),
  so the replacement leaks too; at most one leak restart per hour.
- Their operator is killed (SIGKILL) once `pair`'s leak has been reported and
  saved, before the restart is due, and started again.
- `prom`: two replicas, one leaking, watched by a second operator that reads
  memory from a real Prometheus (scraping kwok's kubelet metrics) and saves no
  checkpoints. It is killed four minutes in, before any verdict, and restarted:
  only Prometheus' past can let it act without a five-minute refill.
- Model loads (load_scenarios.py): a slow load that grows memory, and a leak
  under repeated promotions, with a TF Serving stand-in the operator reads.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from tests.integration.load_scenarios import LoadScenarios
from tests.integration.prometheus import Prometheus
from tfops.crd import CRD_NAME
from tfops.devcluster import LocalCluster
from tfops.memory.watch import checkpoint_name
from tfops.testing.fleet import (
    CRD_FILE,
    ModelServers,
    OperatorProcess,
    create_models_claim,
    create_namespace,
    create_resource_usage,
    load_example,
)
from tfops.testing.support import wait_for

LEAKING = 'Quantity("100Mi") + Quantity("1Mi") * pod.SinceSecond()'
SAWTOOTH = 'Quantity("300Mi") + Quantity("100Mi") * (double(int(pod.SinceSecond()) % 60) / 60.0)'
NAME = "minimal"  # examples/minimal.yaml: a 768Mi limit
CHECKPOINT_SECONDS = 15


@dataclass
class PodTimeline:
    """A namespace's pod changes in the order the apiserver made them:
    (time, pod, ready, deleting)."""

    namespace: str
    changes: list[tuple[float, str, bool, bool]] = field(default_factory=list)

    def follow(self, api: client.ApiClient, stop: threading.Event) -> None:
        core = client.CoreV1Api(api)
        while not stop.is_set():
            for event in watch.Watch().stream(
                core.list_namespaced_pod, self.namespace, timeout_seconds=30
            ):
                pod = event["object"]
                ready = any(
                    c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
                )
                deleting = event["type"] == "DELETED" or bool(pod.metadata.deletion_timestamp)
                self.changes.append((time.time(), pod.metadata.name, ready, deleting))

    def serving(self) -> list[set[str]]:
        """After each change: the pods ready and not being deleted."""
        state: dict[str, bool] = {}
        after = []
        for _, pod, ready, deleting in self.changes:
            state[pod] = ready and not deleting
            after.append({p for p, up in state.items() if up})
        return after

    def first(self, pod: str, *, ready: bool = False, deleting: bool = False) -> float | None:
        return next(
            (
                when
                for when, name, is_ready, is_deleting in self.changes
                if name == pod and (not ready or is_ready) and (not deleting or is_deleting)
            ),
            None,
        )


@dataclass
class GuardScenarios:
    cluster: LocalCluster
    api: client.ApiClient
    pair: str = ""
    single: str = ""
    leaky: str = ""
    healthy: str = ""
    first_single_pod: str = ""
    operator: OperatorProcess | None = None
    killed_at: float | None = None
    restarted_at: float | None = None
    prometheus_binary: Path | None = None
    prometheus_url: str = ""
    prom: str = ""
    prom_leaky: str = ""
    prom_operator: OperatorProcess | None = None
    prom_killed_at: float | None = None
    prom_restarted_at: float | None = None
    loads: LoadScenarios | None = None
    timelines: dict[str, PodTimeline] = field(default_factory=dict)
    failure: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> None:
        """Set the scenarios up and drive them in the background: a failure is
        reported by the tests that check them, not by every integration test.
        Prometheus starts here, on the caller's thread: a child process dies with
        the thread that started it (PR_SET_PDEATHSIG), and the driver's ends."""
        assert self.prometheus_binary is not None
        prometheus = Prometheus(self.prometheus_binary, self.cluster).start()
        self._stack.callback(prometheus.stop)
        self.prometheus_url = prometheus.url
        self._background(self._run)

    def _run(self) -> None:
        self.cluster.install_crd(CRD_FILE, CRD_NAME)
        loads = LoadScenarios(self.cluster, self.api, self._stop, self._stack)
        self._background(loads.run)
        self.loads = loads
        suffix = uuid.uuid4().hex[:6]
        pair_namespace, single_namespace = f"guard-pair-{suffix}", f"guard-single-{suffix}"
        prom_namespace = f"guard-prom-{suffix}"
        for namespace in (pair_namespace, single_namespace, prom_namespace):
            self._namespace(namespace)
        _every_pod_leaks(self.api, single_namespace)
        self.operator = self._start_operator(pair_namespace, single_namespace)
        self.prom_operator = self._start_prometheus_operator(prom_namespace, self.prometheus_url)
        prom = load_example("minimal")
        prom["spec"]["replicas"] = 2
        prom["spec"]["memoryGuard"] = {"sampleIntervalSeconds": 10, "warmupSeconds": 0}
        ModelServers(self.api, prom_namespace).create(prom)
        pair = load_example("minimal")
        pair["spec"]["replicas"] = 2
        pair["spec"]["memoryGuard"] = {"sampleIntervalSeconds": 10, "warmupSeconds": 0}
        single = load_example("minimal")
        single["spec"]["memoryGuard"] = {
            "sampleIntervalSeconds": 10,
            "warmupSeconds": 0,
            "maxRestartsPerHour": 1,
        }
        ModelServers(self.api, pair_namespace).create(pair)
        ModelServers(self.api, single_namespace).create(single)
        for namespace in (pair_namespace, single_namespace):
            ModelServers(self.api, namespace).wait_condition(NAME, "Ready", "True", timeout=120)
            timeline = self.timelines[namespace] = PodTimeline(namespace)
            self._background(lambda t=timeline: t.follow(self.api, self._stop))
        self.leaky, self.healthy = sorted(self.pods(pair_namespace))
        create_resource_usage(self.api, pair_namespace, self.leaky, LEAKING)
        create_resource_usage(self.api, pair_namespace, self.healthy, SAWTOOTH)
        (self.first_single_pod,) = self.pods(single_namespace)
        servers = ModelServers(self.api, prom_namespace)
        servers.wait_condition(NAME, "Ready", "True", timeout=120)
        prom_ready = time.monotonic()
        timeline = self.timelines[prom_namespace] = PodTimeline(prom_namespace)
        self._background(lambda: timeline.follow(self.api, self._stop))
        self.prom_leaky = sorted(self.pods(prom_namespace))[0]
        create_resource_usage(self.api, prom_namespace, self.prom_leaky, LEAKING)
        self.pair, self.single, self.prom = pair_namespace, single_namespace, prom_namespace
        self._background(lambda: self._restart_the_prometheus_operator(prom_ready))
        self._kill_and_restart_the_operator()

    def stop(self) -> None:
        self._stop.set()
        self._stack.close()

    def _namespace(self, name: str) -> None:
        create_models_claim(self.api, create_namespace(self.api, name))

    def _start_operator(self, *namespaces: str) -> OperatorProcess:
        # No TF Serving to ask for model states here: Ready means the pods are.
        return self._stack.enter_context(
            OperatorProcess.start(
                self.cluster,
                "",
                "--guard-checkpoint-seconds",
                str(CHECKPOINT_SECONDS),
                *(f"--namespace={n}" for n in namespaces),
            )
        )

    def _start_prometheus_operator(self, namespace: str, url: str) -> OperatorProcess:
        return self._stack.enter_context(
            OperatorProcess.start(
                self.cluster,
                "",
                "--memory-source=prometheus",
                f"--prometheus-url={url}",
                "--guard-checkpoint-seconds=86400",  # none: only Prometheus remembers
                f"--namespace={namespace}",
            )
        )

    def _restart_the_prometheus_operator(self, ready_at: float) -> None:
        """Four minutes in: the leak has run for minutes but no window has judged it."""
        self._stop.wait(max(0.0, ready_at + 240 - time.monotonic()))
        if self._stop.is_set():
            return
        assert self.prom_operator is not None
        self.prom_operator.kill()
        self.prom_killed_at = time.time()
        self.prom_operator = self._start_prometheus_operator(self.prom, self.prometheus_url)
        self.prom_restarted_at = time.time()

    def _background(self, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except BaseException:  # pytest.fail raises a BaseException
                if not self._stop.is_set():
                    self.failure = traceback.format_exc()

        threading.Thread(target=run, daemon=True).start()

    def _kill_and_restart_the_operator(self) -> None:
        servers = ModelServers(self.api, self.pair)

        def leak_reported_and_saved() -> bool:
            condition = servers.condition(NAME, "MemoryLeakSuspected")
            if not condition or condition["status"] != "True":
                return False
            saved = client.CoreV1Api(self.api).list_namespaced_config_map(
                self.pair, field_selector=f"metadata.name={checkpoint_name(NAME)}"
            )
            data = (saved.items[0].data or {}) if saved.items else {}
            return json.loads(data.get(self.leaky, "{}")).get("leakingSince") is not None

        wait_for(leak_reported_and_saved, timeout=600, interval=2, what="a saved leak verdict")
        if (servers.get(NAME)["status"].get("memoryGuard") or {}).get("restartsTotal"):
            raise AssertionError("the leaking pod was restarted before the operator was killed")
        assert self.operator is not None
        self.operator.kill()
        self.killed_at = time.time()
        self.operator = self._start_operator(self.pair, self.single)
        self.restarted_at = time.time()

    # -- what the tests look at ----------------------------------------------

    def check(self) -> None:
        if self.failure:
            raise AssertionError(f"the scenario driver failed:\n{self.failure}")

    def wait(self, condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
        def checked() -> Any:
            self.check()
            return condition()

        return wait_for(checked, timeout=timeout, interval=2, what=what)

    def pods(self, namespace: str) -> dict[str, client.V1Pod]:
        return {
            p.metadata.name: p
            for p in client.CoreV1Api(self.api).list_namespaced_pod(namespace).items
            if not p.metadata.deletion_timestamp
        }

    def evictions(self, namespace: str) -> list[str]:
        """Pods evicted in `namespace`, from the apiserver's audit log."""
        time.sleep(2)  # the audit batch is flushed every second
        evicted = []
        for line in self.cluster.audit_log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            granted = (event.get("responseStatus") or {}).get("code") == 201
            if (
                granted
                and ref.get("namespace") == namespace
                and ref.get("subresource") == "eviction"
            ):
                evicted.append(ref["name"])
        return evicted


def _every_pod_leaks(api: client.ApiClient, namespace: str) -> None:
    client.CustomObjectsApi(api).create_cluster_custom_object(
        "kwok.x-k8s.io",
        "v1alpha1",
        "clusterresourceusages",
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterResourceUsage",
            "metadata": {"name": f"leak-{namespace}"},
            "spec": {
                "selector": {"matchNamespaces": [namespace]},
                "usages": [{"usage": {"cpu": {"value": "10m"}, "memory": {"expression": LEAKING}}}],
            },
        },
    )
