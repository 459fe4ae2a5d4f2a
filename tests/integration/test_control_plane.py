"""The local control plane is a real one: controllers, scheduler, kwok nodes,
metrics-server and admission all act through the real API."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tfops.devcluster import LocalCluster
from tfops.devcluster.cluster import LOOPBACK
from tfops.testing.fleet import create_resource_usage
from tfops.testing.support import wait_for

MiB = 1024 * 1024
# 50 MiB at start, growing by 1 MiB per second of the pod's age.
GROWING_MEMORY = 'Quantity("50Mi") + Quantity("1Mi") * pod.SinceSecond()'


def _pod_template(labels: dict[str, str]) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="registry.k8s.io/pause:3.10")]
        ),
    )


def _is_running_and_ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def test_deployment_runs_pods_on_kwok_nodes_and_deletion_collects_them(
    api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=_pod_template(labels),
            ),
        ),
    )

    # The controller-manager's deployment controller made a ReplicaSet it owns...
    replica_sets = wait_for(
        lambda: apps.list_namespaced_replica_set(namespace).items,
        timeout=30,
        what="a ReplicaSet",
    )
    assert len(replica_sets) == 1
    owner = replica_sets[0].metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Deployment", "web", True)

    # ...whose pods the scheduler bound to kwok nodes and kwok made Running.
    def running_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return pods if len(pods) == 2 and all(map(_is_running_and_ready, pods)) else []

    pods = wait_for(running_pods, timeout=60, what="two Running, Ready pods")
    for pod in pods:
        assert pod.spec.node_name.startswith("kwok-node-")
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"
        assert pod.metadata.owner_references[0].name == replica_sets[0].metadata.name

    # The deployment controller counts them a moment later.
    wait_for(
        lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 2,
        timeout=30,
        what="the Deployment to count two ready replicas",
    )

    # Garbage collection follows ownerReferences: Deployment -> ReplicaSet -> Pods.
    apps.delete_namespaced_deployment(
        "web", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
    )
    wait_for(
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not core.list_namespaced_pod(namespace).items
        ),
        timeout=60,
        what="the ReplicaSet and pods to be garbage-collected",
    )


def _pod_memory(
    custom: client.CustomObjectsApi, namespace: str, name: str
) -> tuple[str, int] | None:
    """(timestamp, working set bytes) from metrics.k8s.io, or None before the first scrape."""
    try:
        metrics: dict[str, Any] = custom.get_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", namespace, "pods", name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    quantity = metrics["containers"][0]["usage"]["memory"]
    return metrics["timestamp"], _bytes(quantity)


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB, "k": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def test_pod_metrics_follow_a_growing_kwok_resource_usage(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(metadata=client.V1ObjectMeta(name="leaky"), spec=_pod_template({}).spec),
    )
    create_resource_usage(api, namespace, "leaky", GROWING_MEMORY)

    first = wait_for(
        lambda: _pod_memory(custom, namespace, "leaky"), timeout=90, what="the first PodMetrics"
    )
    second = wait_for(
        lambda: (m := _pod_memory(custom, namespace, "leaky")) and m[0] != first[0] and m,
        timeout=60,
        what="a second, later PodMetrics",
    )
    assert second[1] > first[1], f"memory did not grow: {first} then {second}"

    pod = core.read_namespaced_pod("leaky", namespace)
    age = time.time() - pod.metadata.creation_timestamp.timestamp()
    # Each reading is 50 MiB + 1 MiB per second of age at scrape time: never
    # below the base, never above what the pod's current age allows.
    assert 50 * MiB <= first[1] < second[1] <= (50 + age + 1) * MiB

    top = cluster.kubectl("top", "pod", "leaky", "-n", namespace, "--no-headers")
    assert top.stdout.split()[0] == "leaky"
    assert top.stdout.split()[2].endswith("Mi")


WIDGETS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.tfops.dev"},
    "spec": {
        "group": "test.tfops.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "name": {"type": "string", "pattern": "^[a-z]+$"},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_apiserver_refuses_an_object_violating_a_structural_schema(
    api: client.ApiClient, namespace: str
) -> None:
    extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    try:
        extensions.create_custom_resource_definition(WIDGETS_CRD)
    except ApiException as error:
        if error.status != 409:  # left by an earlier test in this session
            raise

    def established() -> bool:
        crd = extensions.read_custom_resource_definition("widgets.test.tfops.dev")
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    wait_for(established, timeout=30, what="the CRD to be Established")

    def widget(spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "test.tfops.dev/v1",
            "kind": "Widget",
            "metadata": {"generateName": "w-"},
            "spec": spec,
        }

    def create(spec: dict[str, Any]) -> dict[str, Any]:
        return custom.create_namespaced_custom_object(
            "test.tfops.dev", "v1", namespace, "widgets", widget(spec)
        )

    # Discovery of a new group can lag establishment by a moment.
    created = wait_for(
        lambda: _try(lambda: create({"size": 3, "name": "ok"})),
        timeout=30,
        what="a valid Widget to be accepted",
    )
    assert created["spec"] == {"size": 3, "name": "ok"}

    with pytest.raises(ApiException) as refused:
        create({"size": 11, "name": "Not-Lower"})
    assert refused.value.status == 422
    body = refused.value.body
    assert "spec.size" in body and "less than or equal to 10" in body
    assert "spec.name" in body and "^[a-z]+$" in body

    with pytest.raises(ApiException) as missing:
        create({"name": "nosize"})
    assert missing.value.status == 422
    assert "spec.size" in missing.value.body and "Required value" in missing.value.body


def _try(action: Any) -> Any:
    try:
        return action()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_every_listener_of_the_harness_is_bound_to_loopback(cluster: LocalCluster) -> None:
    pids = cluster.pids()
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "metrics-server",
    }
    listening: dict[str, set[tuple[str, int]]] = {}
    for name, pid in pids.items():
        sockets = psutil.Process(pid).net_connections(kind="inet")
        listening[name] = {
            (s.laddr.ip, s.laddr.port) for s in sockets if s.status == psutil.CONN_LISTEN
        }
    for name, addresses in listening.items():
        assert addresses, f"{name} listens on nothing"
        assert {ip for ip, _port in addresses} == {LOOPBACK}, f"{name} listens on {addresses}"

    ports = cluster.ports
    assert (LOOPBACK, ports.apiserver) in listening["kube-apiserver"]
    assert (LOOPBACK, ports.etcd_client) in listening["etcd"]
    assert (LOOPBACK, ports.kwok) in listening["kwok"]
    assert (LOOPBACK, ports.metrics_server) in listening["metrics-server"]
