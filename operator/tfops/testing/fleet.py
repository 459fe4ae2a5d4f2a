"""Helpers for tests that run the operator against the local control plane."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tfops.devcluster import LocalCluster
from tfops.devcluster.cluster import free_port
from tfops.model import GROUP, PLURAL, VERSION
from tfops.testing import REPO
from tfops.testing.support import wait_for

CRD_FILE = REPO / "crds" / "modelservers.serving.tfops.dev.yaml"
EXAMPLES = REPO / "examples"
RESYNC_SECONDS = 2


@dataclass
class OperatorProcess:
    """`tfops run` as a subprocess, the way it runs in a cluster."""

    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        cluster: LocalCluster,
        url_template: str,
        *extra: str,
        resync_seconds: float = RESYNC_SECONDS,
        env: dict[str, str] | None = None,
    ) -> Iterator[OperatorProcess]:
        port = free_port()
        log = cluster.workdir / "logs" / f"operator-{port}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tfops",
                    "run",
                    "--serving-url-template",
                    url_template,
                    "--resync-seconds",
                    str(resync_seconds),
                    "--metrics-host",
                    "127.0.0.1",
                    "--metrics-port",
                    str(port),
                    *extra,
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**cluster.env(), **(env or {})},
            )
        running = cls(process, log, f"http://127.0.0.1:{port}/metrics")
        try:
            wait_for(running.serving_metrics, timeout=60, what="the operator to start")
            yield running
        finally:
            running.stop()

    def serving_metrics(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2):
                return True
        except OSError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of the operator's Prometheus metrics (0 if absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric, _, rest = sample.partition("{")
            if metric != name:
                continue
            found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if found == wanted:
                return float(value)
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def create_namespace(api: client.ApiClient, name: str, labels: dict[str, str] | None = None) -> str:
    """A namespace, returned once pods can be created in it (the controller-manager
    has made its default ServiceAccount)."""
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )

    def has_default_account() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    wait_for(has_default_account, timeout=30, what=f"the default ServiceAccount in {name}")
    return name


def create_models_claim(api: client.ApiClient, namespace: str, name: str = "models") -> str:
    """A PersistentVolume bound to a claim: pods that mount it can be scheduled
    (kwok runs nothing, so the volume's contents never matter)."""
    core = client.CoreV1Api(api)
    volume = f"{namespace}-{name}"
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=volume),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": "10Gi"},
                access_modes=["ReadOnlyMany"],
                host_path=client.V1HostPathVolumeSource(path="/models"),
                claim_ref=client.V1ObjectReference(namespace=namespace, name=name),
                storage_class_name="",
            ),
        )
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadOnlyMany"],
                storage_class_name="",
                volume_name=volume,
                resources=client.V1VolumeResourceRequirements(requests={"storage": "10Gi"}),
            ),
        ),
    )
    wait_for(
        lambda: (
            core.read_namespaced_persistent_volume_claim(name, namespace).status.phase == "Bound"
        ),
        timeout=60,
        what=f"claim {name} to be bound",
    )
    return name


def add_versions(
    store: Path,
    base_path: str,
    *versions: int,
    corrupt: bool = False,
    signature: str = "regress",
) -> None:
    """Export real SavedModels into the stand-in's model store, one per version
    (`corrupt`: with a truncated graph, which TensorFlow refuses to load)."""
    from tfops.testing.standin import savedmodels  # TensorFlow: only where models are made

    root = (
        store / base_path.removeprefix("/models/")
        if "://" not in base_path
        else (store / base_path.split("://", 1)[0] / base_path.split("://", 1)[1])
    )
    for version in versions:
        directory = root / str(version)
        if not directory.exists():
            savedmodels.write_saved_model(directory, version, signature=signature)
        if corrupt:
            savedmodels.corrupt(directory)


def load_example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))


def models_of(manifest: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """(basePath, versions to create) for every model of a manifest."""
    result = []
    for model in manifest["spec"]["models"]:
        policy = model.get("versionPolicy") or {}
        versions = list(policy.get("specific") or [1, 2])
        result.append((model["basePath"], versions))
    return result


class ModelServers:
    """ModelServer objects through the real API."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, manifest
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def patch(self, name: str, spec_patch: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec_patch}
            )
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        status = self.get(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 90
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            condition = self.condition(name, kind)
            if (
                condition
                and condition["status"] == status
                and (reason is None or condition["reason"] == reason)
            ):
                current = self.get(name)
                if (
                    current.get("status", {}).get("observedGeneration")
                    == current["metadata"]["generation"]
                ):
                    return condition
            return None

        try:
            return wait_for(
                matches,
                timeout=timeout,
                what=f"{name} {kind}={status}" + (f" ({reason})" if reason else ""),
            )
        except BaseException:
            print(json.dumps(self.get(name).get("status"), indent=1))
            raise


def read_or_none(read: Any, *args: Any) -> Any:
    try:
        return read(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    core = client.CoreV1Api(api)
    events = core.list_namespaced_event(namespace).items
    return [
        e
        for e in events
        if e.involved_object.name == name and e.involved_object.kind == "ModelServer"
    ]


def audit_writes(
    cluster: LocalCluster,
    namespace: str,
    since: float,
    agents: tuple[str, ...] = ("tfops/", "kopf/"),
) -> list[dict[str, Any]]:
    """Write requests in `namespace` by the operator's clients since `since` (epoch)."""
    time.sleep(2)  # the apiserver flushes its audit batch every second
    writes = []
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        stamp = event.get("requestReceivedTimestamp", "")
        if not stamp:
            continue
        when = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        if when < since:
            continue
        if (event.get("objectRef") or {}).get("namespace") != namespace:
            continue
        if event.get("userAgent", "").startswith(agents):
            writes.append(event)
    return writes


def create_resource_usage(api: client.ApiClient, namespace: str, pod: str, memory: str) -> None:
    """Drive a pod's simulated working set with a kwok CEL expression (served by
    kwok to metrics-server, and from there by metrics.k8s.io)."""
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "kwok.x-k8s.io",
        "v1alpha1",
        namespace,
        "resourceusages",
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ResourceUsage",
            "metadata": {"name": pod},
            "spec": {
                "usages": [{"usage": {"cpu": {"value": "10m"}, "memory": {"expression": memory}}}]
            },
        },
    )
