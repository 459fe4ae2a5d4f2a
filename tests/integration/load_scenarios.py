"""Model loads and the memory guard, end to end: the operator reads each pod's model
states from a TF Serving stand-in and tells the guard which pods are loading. They
run beside guard_scenarios.py's (same control plane, an operator of their own) and
are checked by tests/integration/test_memory_guard.py.

- `slow`: two replicas at a flat 200 MiB are promoted to a version that takes five
  minutes to load, while kwok grows both pods' working set 60 MiB/min, the pace
  at which the `pair` scenario's leaking pod is evicted. The load ends, the level
  stays. No pod may be restarted.
- `pushed`: two replicas, one leaking 60 MiB/min from its start, promoted to a
  new version every three minutes. The leak must still be caught and its pod
  evicted before it reaches the 1 GiB limit; the other pod never is.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tfops.devcluster import LocalCluster
from tfops.promotion import promoted_model
from tfops.testing.fleet import (
    ModelServers,
    OperatorProcess,
    create_models_claim,
    create_namespace,
)
from tfops.testing.standin.server import TFServingStandIn
from tfops.testing.standin.tfserving import DirectoryLoader

NAME = "search"
FLAT = 'Quantity("200Mi")'
# 60 MiB/min from the pod's start: the pair scenario's leak.
LEAKING = 'Quantity("100Mi") + Quantity("1Mi") * pod.SinceSecond()'
SLOW_LOAD_SECONDS = 300.0
# Promote the slow fleet once its pods have this much flat history: without the
# loading signal, the load's growth would be judged a leak within minutes.
SLOW_PROMOTE_AT_AGE = 150.0
PUSH_EVERY_SECONDS = 180.0
PUSH_LOAD_SECONDS = 5.0
VERSIONS = 30


def _growing_from(age: float, level_mib: int) -> str:
    """60 MiB/min from `level_mib`, starting at pod age `age` seconds."""
    return f'Quantity("{level_mib}Mi") + Quantity("1Mi") * (pod.SinceSecond() - {age:.0f}.0)'


def _fleet(namespace: str, limit: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.tfops.dev/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": 2,
            "modelStorage": {"claimName": "models"},
            "models": [
                {
                    "name": "ranker",
                    "basePath": f"/models/{namespace}/ranker",
                    "size": "100Mi",
                    "versionPolicy": {"specific": [1]},
                    "versionLabels": {"stable": 1},
                }
            ],
            # Loads of minutes: the default deadline derives from the start-up budget.
            "promotion": {"graceSeconds": 5, "timeoutSeconds": 900},
            "resources": {"limits": {"memory": limit, "cpu": "1"}},
            "memoryGuard": {"sampleIntervalSeconds": 10, "warmupSeconds": 0},
        },
    }


def set_resource_usage(api: client.ApiClient, namespace: str, pod: str, memory: str) -> None:
    """Drive (or re-drive) a pod's simulated working set with a kwok CEL expression."""
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ResourceUsage",
        "metadata": {"name": pod},
        "spec": {
            "usages": [{"usage": {"cpu": {"value": "10m"}, "memory": {"expression": memory}}}]
        },
    }
    group = ("kwok.x-k8s.io", "v1alpha1", namespace, "resourceusages")
    try:
        custom.create_namespaced_custom_object(*group, body)
    except ApiException as error:
        if error.status != 409:
            raise
        custom.patch_namespaced_custom_object(*group, pod, {"spec": body["spec"]})


@dataclass
class LoadScenarios:
    cluster: LocalCluster
    api: client.ApiClient
    stop: threading.Event
    stack: contextlib.ExitStack
    slow: str = ""
    pushed: str = ""
    pushed_leaky: str = ""
    pushed_healthy: str = ""
    slow_pods: set[str] = field(default_factory=set)
    # When the slow fleet's promotion began and when it was done (epoch seconds).
    slow_promoted_at: float | None = None
    slow_loaded_at: float | None = None
    pushes: list[float] = field(default_factory=list)

    def run(self) -> None:
        store = Path(self.stack.enter_context(tempfile.TemporaryDirectory()))
        standin = TFServingStandIn(self.api, store, loader=DirectoryLoader()).start()
        self.stack.callback(standin.stop)
        suffix = uuid.uuid4().hex[:6]
        slow, pushed = f"guard-slow-{suffix}", f"guard-pushed-{suffix}"
        for namespace in (slow, pushed):
            create_models_claim(self.api, create_namespace(self.api, namespace))
            for version in range(1, VERSIONS + 1):
                directory = store / namespace / "ranker" / str(version)
                directory.mkdir(parents=True)
                (directory / "saved_model.pb").write_bytes(b"")
        standin.set_load_seconds(pushed, PUSH_LOAD_SECONDS)
        self.stack.enter_context(
            OperatorProcess.start(
                self.cluster, standin.url_template, f"--namespace={slow}", f"--namespace={pushed}"
            )
        )
        ModelServers(self.api, slow).create(_fleet(slow, "768Mi"))
        ModelServers(self.api, pushed).create(_fleet(pushed, "1Gi"))
        for namespace in (slow, pushed):
            ModelServers(self.api, namespace).wait_condition(
                NAME, "Ready", "True", "AllModelsAvailable", timeout=180
            )
        self.slow_pods = set(self._pods(slow))
        for pod in self.slow_pods:
            set_resource_usage(self.api, slow, pod, FLAT)
        self.pushed_leaky, self.pushed_healthy = sorted(self._pods(pushed))
        set_resource_usage(self.api, pushed, self.pushed_leaky, LEAKING)
        set_resource_usage(self.api, pushed, self.pushed_healthy, FLAT)
        self.slow, self.pushed = slow, pushed
        pushing = threading.Thread(target=self._push, args=(pushed,), daemon=True)
        pushing.start()
        self._promote_slowly(slow, standin)
        pushing.join()

    def _pods(self, namespace: str) -> dict[str, client.V1Pod]:
        return {
            p.metadata.name: p
            for p in client.CoreV1Api(self.api).list_namespaced_pod(namespace).items
            if not p.metadata.deletion_timestamp
        }

    def _promote(self, namespace: str, version: int) -> None:
        servers = ModelServers(self.api, namespace)
        (model,) = servers.get(NAME)["spec"]["models"]
        servers.patch(NAME, {"models": [promoted_model(model, version, "stable")]})

    def _promoted(self, namespace: str, version: int) -> bool:
        status = ModelServers(self.api, namespace).get(NAME).get("status") or {}
        (model,) = status.get("models") or [{}]
        # TF Serving keeps reporting an unloaded version (END) for the process's life.
        return (model.get("labels") or {}).get("stable") == version and [
            v["version"] for v in model.get("versions") or [] if v.get("state") != "END"
        ] == [version]

    def _promote_slowly(self, namespace: str, standin: TFServingStandIn) -> None:
        pods = self._pods(namespace)
        started = {name: pod.status.start_time.timestamp() for name, pod in pods.items()}
        self.stop.wait(max(0.0, max(started.values()) + SLOW_PROMOTE_AT_AGE - time.time()))
        if self.stop.is_set():
            return
        standin.set_load_seconds(namespace, SLOW_LOAD_SECONDS)
        now = time.time()
        for name in pods:
            set_resource_usage(self.api, namespace, name, _growing_from(now - started[name], 200))
        self._promote(namespace, 2)
        self.slow_promoted_at = now
        servers = ModelServers(self.api, namespace)
        while not self._promoted(namespace, 2):
            degraded = servers.condition(NAME, "Degraded") or {}
            if degraded.get("status") == "True":
                raise AssertionError(f"the slow promotion failed: {degraded.get('message')}")
            if self.stop.wait(2):
                return
        done = time.time()
        level = 200 + round(done - now)
        for name in pods:
            set_resource_usage(self.api, namespace, name, f'Quantity("{level}Mi")')
        self.slow_loaded_at = done

    def _push(self, namespace: str) -> None:
        """A new version every PUSH_EVERY_SECONDS while the leaking pod lives."""
        version = 1
        while version < VERSIONS and self.pushed_leaky in self._pods(namespace):
            version += 1
            self._promote(namespace, version)
            self.pushes.append(time.time())
            if self.stop.wait(PUSH_EVERY_SECONDS):
                return
