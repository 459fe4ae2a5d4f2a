"""ModelServers on the real control plane: the operator (a subprocess), kwok pods,
and the TF Serving stand-in reading the models.config the operator wrote."""

from __future__ import annotations

import copy
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from kubernetes import client
from tensorflow_serving.config import model_server_config_pb2

from tfops.devcluster import LocalCluster
from tfops.testing.fleet import (
    RESYNC_SECONDS,
    ModelServers,
    OperatorProcess,
    add_versions,
    audit_writes,
    events_for,
    load_example,
    models_of,
    read_or_none,
)
from tfops.testing.standin.server import TFServingStandIn
from tfops.testing.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")

EXAMPLES = ["minimal", "multi-model", "gpu", "batching", "autoscaling"]


def _parse_models_config(text: str) -> Any:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(text, config)
    return config


def _deploy(
    api: client.ApiClient, namespace: str, store: Path, manifest: dict[str, Any]
) -> ModelServers:
    for base_path, versions in models_of(manifest):
        add_versions(store, base_path, *versions)
    servers = ModelServers(api, namespace)
    servers.create(manifest)
    return servers


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_becomes_a_ready_fleet(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path, example: str
) -> None:
    manifest = load_example(example)
    name = manifest["metadata"]["name"]
    servers = _deploy(api, namespace, model_store, manifest)
    ready = servers.wait_condition(name, "Ready", "True", "AllModelsAvailable", timeout=120)
    assert "AVAILABLE" in ready["message"]

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    policy, autoscaling = client.PolicyV1Api(api), client.AutoscalingV2Api(api)
    owner_uid = servers.get(name)["metadata"]["uid"]
    deployment = apps.read_namespaced_deployment(name, namespace)
    config_map = core.read_namespaced_config_map(f"{name}-config", namespace)
    service = core.read_namespaced_service(name, namespace)
    pdb = policy.read_namespaced_pod_disruption_budget(name, namespace)
    for owned in (deployment, config_map, service, pdb):
        (reference,) = owned.metadata.owner_references
        assert (reference.kind, reference.uid, reference.controller) == (
            "ModelServer",
            owner_uid,
            True,
        )

    # models.config is TF Serving's own format and holds exactly the declared models.
    config = _parse_models_config(config_map.data["models.config"])
    assert [m.name for m in config.model_config_list.config] == [
        m["name"] for m in manifest["spec"]["models"]
    ]

    container = deployment.spec.template.spec.containers[0]
    assert container.image == servers.get(name)["status"]["effective"]["image"]
    assert container.image.endswith(":2.19.1") or container.image.endswith(":2.19.1-gpu")
    assert "--model_config_file=/etc/tfops/models.config" in container.args
    assert any(a.startswith("--grpc_max_threads=") for a in container.args)
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert (
        container.startup_probe.failure_threshold * container.startup_probe.period_seconds
        >= servers.get(name)["status"]["effective"]["startupBudgetSeconds"]
    )
    assert deployment.spec.strategy.rolling_update.max_unavailable == 0
    if "modelStorage" in manifest["spec"]:
        (mount,) = [m for m in container.volume_mounts if m.name == "models"]
        assert (mount.mount_path, mount.read_only) == ("/models", True)

    pods = core.list_namespaced_pod(
        namespace, label_selector=f"serving.tfops.dev/modelserver={name}"
    ).items
    assert pods and all(p.status.phase == "Running" for p in pods)
    # GPU fleets land on the tainted GPU pool (its nodes alone have GPUs); the taint
    # keeps every other fleet off it.
    on_gpu_pool = {p.spec.node_name.startswith("kwok-gpu-node-") for p in pods}
    assert on_gpu_pool == {"gpu" in manifest["spec"]}

    hpa = read_or_none(autoscaling.read_namespaced_horizontal_pod_autoscaler, name, namespace)
    assert (hpa is not None) == ("autoscaling" in manifest["spec"])
    status = servers.get(name)["status"]
    assert (
        status["modelsSummary"] == f"{len(manifest['spec']['models'])}/"
        f"{len(manifest['spec']['models'])}"
    )
    assert status["effective"]["memoryLimit"] == container.resources.limits["memory"]


def test_placement_identity_and_environment_reach_the_pods_and_roll_them(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "models-reader"}})
    manifest = load_example("minimal")
    manifest["spec"]["replicas"] = 3
    manifest["spec"]["pod"] = {
        "serviceAccountName": "models-reader",
        "imagePullSecrets": [{"name": "registry"}],
        "labels": {"team": "search"},
        "annotations": {"mesh.example/inject": "false"},
        "env": [{"name": "GOOGLE_CLOUD_PROJECT", "value": "ml-prod"}],
    }
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("minimal", "Ready", "True", timeout=120)

    def pods() -> list[Any]:
        return core.list_namespaced_pod(
            namespace, label_selector="serving.tfops.dev/modelserver=minimal"
        ).items

    running = pods()
    # Spread over the plain nodes by default (three replicas, three nodes).
    assert len({p.spec.node_name for p in running}) == 3
    for pod in running:
        assert pod.metadata.labels["team"] == "search"
        assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "tfops"
        assert pod.metadata.annotations["mesh.example/inject"] == "false"
        assert pod.spec.service_account_name == "models-reader"
        assert pod.spec.automount_service_account_token is False
        assert [s.name for s in pod.spec.image_pull_secrets] == ["registry"]
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["GOOGLE_CLOUD_PROJECT"] == "ml-prod" and "OMP_NUM_THREADS" in env

    # A change of the pod's metadata rolls the fleet.
    before = {p.metadata.name for p in running}
    servers.patch("minimal", {"pod": {"labels": {"team": "ranking"}}})
    wait_for(
        lambda: (
            (now := pods())
            and all(p.metadata.labels.get("team") == "ranking" for p in now)
            and not before & {p.metadata.name for p in now}
        ),
        timeout=180,
        what="the fleet to roll with the new label",
    )


def test_a_label_tfops_owns_is_refused_by_the_apiserver(
    api: client.ApiClient, namespace: str, models_claim: str
) -> None:
    manifest = load_example("minimal")
    manifest["spec"]["pod"] = {"labels": {"app.kubernetes.io/managed-by": "me"}}
    with pytest.raises(client.ApiException) as refused:
        ModelServers(api, namespace).create(manifest)
    assert refused.value.status == 422
    assert "spec.pod.labels" in refused.value.body and "tfops' own" in refused.value.body


def test_adding_a_model_reaches_running_pods_without_a_rollout(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    manifest = load_example("minimal")
    manifest["spec"]["resources"] = {"limits": {"memory": "4Gi", "cpu": "2"}}
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    generation = apps.read_namespaced_deployment("minimal", namespace).metadata.generation
    pods_before = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}

    add_versions(model_store, "/models/extra", 3)
    models = [
        *manifest["spec"]["models"],
        {"name": "extra", "basePath": "/models/extra", "size": "50Mi"},
    ]
    servers.patch("minimal", {"models": models})
    wait_for(
        lambda: (
            "extra"
            in core.read_namespaced_config_map("minimal-config", namespace).data["models.config"]
        ),
        timeout=30,
        what="the new model in models.config",
    )
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")
    assert servers.get("minimal")["status"]["modelsSummary"] == "2/2"
    # No rollout: same Deployment generation, same pods.
    assert apps.read_namespaced_deployment("minimal", namespace).metadata.generation == generation
    assert {p.metadata.name for p in core.list_namespaced_pod(namespace).items} == pods_before


def test_an_image_change_rolls_the_fleet_with_no_unavailability(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    manifest = load_example("minimal")
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    old_pods = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}

    servers.patch("minimal", {"image": "tensorflow/serving:2.20.0"})

    def rolled() -> bool:
        deployment = apps.read_namespaced_deployment("minimal", namespace)
        return deployment.spec.template.spec.containers[0].image == "tensorflow/serving:2.20.0"

    wait_for(rolled, timeout=30, what="the Deployment to carry the new image")

    def running_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace).items
        return [
            p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]

    # The fleet stays Ready through the roll, so the condition alone cannot say it ended:
    # wait until every running pod is a new one.
    wait_for(
        lambda: bool(running_pods()) and not {p.metadata.name for p in running_pods()} & old_pods,
        timeout=120,
        what="the old pods to be replaced",
    )
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable", timeout=120)
    assert all(p.spec.containers[0].image == "tensorflow/serving:2.20.0" for p in running_pods())


def test_deleted_and_edited_owned_objects_are_restored(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    servers = _deploy(api, namespace, model_store, load_example("minimal"))
    servers.wait_condition("minimal", "Ready", "True")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    original = core.read_namespaced_config_map("minimal-config", namespace).data

    core.delete_namespaced_service("minimal", namespace)
    core.patch_namespaced_config_map(
        "minimal-config", namespace, {"data": {"models.config": "# emptied by hand\n"}}
    )
    apps.patch_namespaced_deployment(
        "minimal",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "tensorflow-serving", "image": "example.com/hijacked:1"}
                        ]
                    }
                }
            }
        },
    )

    wait_for(
        lambda: read_or_none(core.read_namespaced_service, "minimal", namespace),
        timeout=10 * RESYNC_SECONDS,
        what="the Service to be recreated",
    )
    wait_for(
        lambda: core.read_namespaced_config_map("minimal-config", namespace).data == original,
        timeout=10 * RESYNC_SECONDS,
        what="models.config to be restored",
    )
    wait_for(
        lambda: (
            apps.read_namespaced_deployment("minimal", namespace)
            .spec.template.spec.containers[0]
            .image
            == "tensorflow/serving:2.19.1"
        ),
        timeout=10 * RESYNC_SECONDS,
        what="the image to be restored",
    )
    # Events are posted off the reconcile's thread: a moment after what they report.
    wait_for(
        lambda: {"Created", "Updated"} <= {e.reason for e in events_for(api, namespace, "minimal")},
        timeout=10,
        what="the Created and Updated Events",
    )


def test_deleting_the_modelserver_removes_what_it_owns_and_nothing_else(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    manifest = load_example("autoscaling")
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("search", "Ready", "True")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unrelated"), data={"keep": "me"}),
    )

    servers.delete("search")
    autoscaling = client.AutoscalingV2Api(api)
    policy = client.PolicyV1Api(api)

    def all_gone() -> bool:
        return (
            all(
                read is None
                for read in (
                    read_or_none(apps.read_namespaced_deployment, "search", namespace),
                    read_or_none(core.read_namespaced_service, "search", namespace),
                    read_or_none(core.read_namespaced_config_map, "search-config", namespace),
                    read_or_none(policy.read_namespaced_pod_disruption_budget, "search", namespace),
                    read_or_none(
                        autoscaling.read_namespaced_horizontal_pod_autoscaler, "search", namespace
                    ),
                )
            )
            and not core.list_namespaced_pod(namespace).items
        )

    wait_for(all_gone, timeout=60, what="every owned object to be garbage-collected")
    assert core.read_namespaced_config_map("unrelated", namespace).data == {"keep": "me"}
    assert core.read_namespaced_persistent_volume_claim("models", namespace)


def test_turning_autoscaling_off_removes_the_hpa_and_keeps_the_replicas(
    api: client.ApiClient, namespace: str, model_store: Path
) -> None:
    servers = _deploy(api, namespace, model_store, load_example("autoscaling"))
    servers.wait_condition("search", "Ready", "True")
    apps, autoscaling = client.AppsV1Api(api), client.AutoscalingV2Api(api)
    wait_for(
        lambda: apps.read_namespaced_deployment("search", namespace).spec.replicas == 2,
        timeout=60,
        what="the HPA to scale to minReplicas",
    )

    servers.patch("search", {"autoscaling": None, "replicas": 3})
    wait_for(
        lambda: (
            read_or_none(autoscaling.read_namespaced_horizontal_pod_autoscaler, "search", namespace)
            is None
        ),
        timeout=30,
        what="the HPA to be deleted",
    )
    wait_for(
        lambda: apps.read_namespaced_deployment("search", namespace).spec.replicas == 3,
        timeout=30,
        what="the Deployment to take spec.replicas again",
    )
    servers.wait_condition("search", "Ready", "True", timeout=120)


def test_the_operator_is_ready_while_the_api_server_answers(operator: OperatorProcess) -> None:
    base = operator.metrics_url.removesuffix("/metrics")
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
        assert response.status == 200
        assert response.read().decode().strip() == "the API server answers"
    with urllib.request.urlopen(f"{base}/livez", timeout=5) as response:
        assert response.status == 200


def test_an_unchanged_modelserver_causes_no_writes(
    cluster: LocalCluster,
    api: client.ApiClient,
    namespace: str,
    models_claim: str,
    model_store: Path,
) -> None:
    servers = _deploy(api, namespace, model_store, load_example("multi-model"))
    servers.wait_condition("recommender", "Ready", "True", "AllModelsAvailable", timeout=120)
    time.sleep(2 * RESYNC_SECONDS)  # let the last status write and events settle
    since = time.time()
    time.sleep(5 * RESYNC_SECONDS)
    writes = audit_writes(cluster, namespace, since)
    assert writes == [], [(w["verb"], w["objectRef"], w["userAgent"]) for w in writes]
    # ...while the operator kept re-observing it.
    assert servers.get("recommender")["status"]["modelsSummary"] == "2/2"


def test_a_broken_version_added_later_degrades_the_fleet_with_tf_servings_error(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    manifest = load_example("minimal")
    manifest["spec"]["resources"] = {"limits": {"memory": "4Gi", "cpu": "2"}}
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")

    # A model added by a config reload whose only version is corrupt: TF Serving
    # retries the load (LOADING), then reports END with TensorFlow's own error.
    add_versions(model_store, f"/models/broken-{namespace}", 1, corrupt=True)
    models = [
        *manifest["spec"]["models"],
        {"name": "broken", "basePath": f"/models/broken-{namespace}", "size": "50Mi"},
    ]
    servers.patch("minimal", {"models": models})
    degraded = servers.wait_condition("minimal", "Degraded", "True", "ModelLoadFailed")
    assert "Error parsing message" in degraded["message"]  # TensorFlow's own error
    assert "does not load it again" in degraded["message"]
    ready = servers.condition("minimal", "Ready")
    assert ready is not None and ready["status"] == "False"
    broken = next(m for m in servers.get("minimal")["status"]["models"] if m["name"] == "broken")
    assert broken["versions"][0]["state"] == "END"


def test_a_broken_version_at_start_up_is_reported_from_the_pod_that_exits(
    api: client.ApiClient,
    namespace: str,
    models_claim: str,
    model_store: Path,
    standin: TFServingStandIn,
) -> None:
    manifest = load_example("minimal")
    manifest["spec"]["models"][0]["basePath"] = f"/models/broken-{namespace}"
    add_versions(model_store, f"/models/broken-{namespace}", 1, corrupt=True)
    servers = ModelServers(api, namespace)
    servers.create(manifest)
    # TF Serving exits when its initial config cannot load, so its REST port
    # never answers...
    ready = servers.wait_condition("minimal", "Ready", "False", "ModelStatusUnknown")
    assert "exits when one fails" in ready["message"]
    exit_message = wait_for(
        lambda: next((m for ns, _, m in standin.exits if ns == namespace), None),
        timeout=30,
        what="the stand-in's TF Serving to exit",
    )
    assert "1 model(s) did not become available" in exit_message
    # ...and the kubelet puts the end of its log in the container's termination
    # message (terminationMessagePolicy: FallbackToLogsOnError). kwok runs no
    # container, so the test writes what the kubelet would.
    core = client.CoreV1Api(api)
    (pod,) = core.list_namespaced_pod(namespace).items
    statuses = client.ApiClient().sanitize_for_serialization(pod.status.container_statuses)
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    statuses[0]["restartCount"] = 1
    statuses[0]["lastState"] = {
        "terminated": {
            "reason": "Error",
            "exitCode": 255,
            "message": exit_message,
            "startedAt": finished,
            "finishedAt": finished,
        }
    }
    core.patch_namespaced_pod_status(
        pod.metadata.name, namespace, {"status": {"containerStatuses": statuses}}
    )
    degraded = servers.wait_condition("minimal", "Degraded", "True", "ServingExited")
    assert "did not become available" in degraded["message"]
    assert pod.metadata.name in degraded["message"]


def test_an_oom_killed_container_is_counted_reported_and_degrades(
    api: client.ApiClient,
    namespace: str,
    models_claim: str,
    model_store: Path,
    operator: OperatorProcess,
) -> None:
    servers = _deploy(api, namespace, model_store, load_example("minimal"))
    servers.wait_condition("minimal", "Ready", "True")
    core = client.CoreV1Api(api)
    (pod,) = core.list_namespaced_pod(namespace).items
    statuses = copy.deepcopy(
        client.ApiClient().sanitize_for_serialization(pod.status.container_statuses)
    )
    # What the kubelet writes after the kernel's OOM killer ended the container.
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    statuses[0]["restartCount"] = 1
    statuses[0]["lastState"] = {
        "terminated": {
            "reason": "OOMKilled",
            "exitCode": 137,
            "startedAt": finished,
            "finishedAt": finished,
        }
    }
    core.patch_namespaced_pod_status(
        pod.metadata.name, namespace, {"status": {"containerStatuses": statuses}}
    )

    degraded = servers.wait_condition("minimal", "Degraded", "True", "OOMKilled")
    assert pod.metadata.name in degraded["message"]
    assert "limits.memory" in degraded["message"]
    oom = servers.get("minimal")["status"]["oomKills"]
    assert (oom["total"], oom["lastPod"]) == (1, pod.metadata.name)
    wait_for(
        lambda: "OOMKilled" in {e.reason for e in events_for(api, namespace, "minimal")},
        timeout=20,
        what="an OOMKilled event",
    )
    assert operator.metric("tfops_oom_kills_total", namespace=namespace, modelserver="minimal") == 1
    # Counted once, however many resyncs see it.
    time.sleep(3 * RESYNC_SECONDS)
    assert servers.get("minimal")["status"]["oomKills"]["total"] == 1


def test_kubectl_get_and_wait_work_on_modelservers(
    cluster: LocalCluster,
    api: client.ApiClient,
    namespace: str,
    models_claim: str,
    model_store: Path,
) -> None:
    _deploy(api, namespace, model_store, load_example("batching"))
    waited = cluster.kubectl(
        "wait", "--for=condition=Ready", "ms/batched", "-n", namespace, "--timeout=120s"
    )
    assert "condition met" in waited.stdout
    table = cluster.kubectl("get", "ms", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "READY",
        "REPLICAS",
        "MODELS",
        "MEMORY",
        "LEAK-RESTARTS",
        "AGE",
    ]
    assert table[1].split()[:6] == ["batched", "True", "2/2", "1/1", "1792Mi", "0"]
    explained = cluster.kubectl("explain", "ms.spec.models.versionPolicy").stdout
    assert "acknowledgeAllVersions" in explained and "latest" in explained


def test_a_deployment_the_apiserver_refuses_creates_nothing_and_is_reported(
    cluster: LocalCluster, api: client.ApiClient, namespace: str, model_store: Path
) -> None:
    manifest = load_example("autoscaling")
    manifest["spec"]["models"][0]["basePath"] = "/models/encoder"
    # Passes the CRD and the parser (one known volume source), but the API server
    # refuses the Deployment: an nfs volume needs a server and a path.
    manifest["spec"]["modelStorage"] = {"volume": {"nfs": {}}}
    add_versions(model_store, "/models/encoder", 1)
    servers = ModelServers(api, namespace)
    since = time.time()
    servers.create(manifest)
    ready = servers.wait_condition("search", "Ready", "False", "ApplyFailed")
    assert "Deployment search" in ready["message"] and "nfs" in ready["message"]
    progressing = servers.condition("search", "Progressing")
    assert progressing is not None and "tries again in" in progressing["message"]

    time.sleep(25)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    policy, autoscaling = client.PolicyV1Api(api), client.AutoscalingV2Api(api)
    for read, name in (
        (apps.read_namespaced_deployment, "search"),
        (core.read_namespaced_config_map, "search-config"),
        (core.read_namespaced_service, "search"),
        (policy.read_namespaced_pod_disruption_budget, "search"),
        (autoscaling.read_namespaced_horizontal_pod_autoscaler, "search"),
    ):
        assert read_or_none(read, name, namespace) is None, name
    # A bounded back-off (5, 10, 20 s...), not an attempt every resync (2 s).
    attempts = [
        w
        for w in audit_writes(cluster, namespace, since)
        if (w.get("objectRef") or {}).get("resource") == "deployments"
    ]
    assert 2 <= len(attempts) <= 5, len(attempts)
    reported = [e for e in events_for(api, namespace, "search") if e.reason == "ApplyFailed"]
    assert len(reported) == 1

    servers.patch("search", {"modelStorage": {"volume": {"nfs": {"server": "nfs", "path": "/m"}}}})
    servers.wait_condition("search", "Ready", "True", timeout=120)


def test_a_pod_leaves_the_endpoints_while_a_model_loads_and_comes_back_once_it_serves(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    """The readiness gate: TF Serving's own probes pass throughout (its ports are
    open), yet a model added later and not yet AVAILABLE takes the pod out of the
    Service's endpoints until it serves."""
    from tfops.readiness import CONDITION

    manifest = load_example("minimal")
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)

    def endpoints_ready() -> list[bool]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=minimal"
        ).items
        return [bool(e.conditions.ready) for s in slices for e in s.endpoints or []]

    def gates() -> list[str]:
        return [
            c.status
            for p in core.list_namespaced_pod(namespace).items
            if not p.metadata.deletion_timestamp
            for c in p.status.conditions or []
            if c.type == CONDITION
        ]

    wait_for(
        lambda: endpoints_ready() and all(endpoints_ready()), timeout=30, what="ready endpoints"
    )
    assert gates() and all(g == "True" for g in gates())

    # A new model whose base path has no version yet: it cannot become AVAILABLE.
    models = [
        *manifest["spec"]["models"],
        {"name": "later", "basePath": "/models/later", "size": "50Mi"},
    ]
    servers.patch("minimal", {"models": models})
    wait_for(
        lambda: gates() and all(g == "False" for g in gates()),
        timeout=60,
        what="the gates to close",
    )
    wait_for(
        lambda: endpoints_ready() and not any(endpoints_ready()), timeout=30, what="endpoints out"
    )
    # Its containers stay ready: TF Serving is up and serves the first model.
    pods = core.list_namespaced_pod(namespace).items
    assert all(
        c.status == "True" for p in pods for c in p.status.conditions or []
        if c.type == "ContainersReady"
    )  # fmt: skip

    add_versions(model_store, "/models/later", 1)
    wait_for(
        lambda: gates() and all(g == "True" for g in gates()), timeout=90, what="the gates to open"
    )
    wait_for(
        lambda: endpoints_ready() and all(endpoints_ready()), timeout=30, what="endpoints back"
    )
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")


def test_a_pod_whose_config_poll_wedged_is_restarted_when_opted_in(
    api: client.ApiClient,
    namespace: str,
    models_claim: str,
    model_store: Path,
    standin: TFServingStandIn,
) -> None:
    """The config watchdog's opt-in: a pod whose TF Serving stopped applying
    models.config is restarted through the guard's safe path (one pod, the rest of
    the fleet serving), and its replacement reads the config afresh. The optional
    headless Service comes and goes with its field."""
    manifest = load_example("minimal")
    manifest["spec"].update(
        replicas=2,
        versionPollSeconds=1,
        probes={"startupBudgetSeconds": 10},
        traffic={"restartWhenConfigNotApplied": True, "headlessService": True},
        # Explicit, so adding a model changes no pod template (a rollout would
        # replace the wedged pod by itself).
        resources={"limits": {"memory": "4Gi", "cpu": "2"}},
    )
    servers = _deploy(api, namespace, model_store, manifest)
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable")
    core = client.CoreV1Api(api)
    headless = core.read_namespaced_service("minimal-headless", namespace)
    assert headless.spec.cluster_ip == "None"
    assert (
        headless.spec.selector == core.read_namespaced_service("minimal", namespace).spec.selector
    )

    def pods() -> list[str]:
        return sorted(
            p.metadata.name
            for p in core.list_namespaced_pod(namespace).items
            if not p.metadata.deletion_timestamp
        )

    wedged, healthy = pods()
    standin.wedge_config_poll(namespace, wedged)
    add_versions(model_store, "/models/extra", 1)
    models = [
        *manifest["spec"]["models"],
        {"name": "extra", "basePath": "/models/extra", "size": "50Mi"},
    ]
    servers.patch("minimal", {"models": models})
    # The healthy pod keeps serving throughout; only the wedged one is replaced.
    wait_for(lambda: wedged not in pods(), timeout=240, what=f"{wedged} to be restarted")
    assert healthy in pods()
    (event,) = wait_for(
        lambda: [
            e
            for e in events_for(api, namespace, "minimal")
            if e.reason == "ConfigNotAppliedRestart"
        ],
        timeout=30,
        what="the restart's Event",
    )
    assert wedged in event.message and "model extra unknown to it" in event.message
    (restart,) = servers.get("minimal")["status"]["memoryGuard"]["restarts"]
    assert (restart["pod"], restart["reason"], restart["action"]) == (
        wedged,
        "ConfigNotApplied",
        "evict",
    )
    servers.wait_condition("minimal", "Ready", "True", "AllModelsAvailable", timeout=120)
    servers.wait_condition("minimal", "Degraded", "False", timeout=60)
    assert healthy in pods()

    servers.patch("minimal", {"traffic": {"headlessService": False}})
    wait_for(
        lambda: read_or_none(core.read_namespaced_service, "minimal-headless", namespace) is None,
        timeout=30,
        what="the headless Service to be deleted",
    )
    assert core.read_namespaced_service("minimal", namespace).spec.cluster_ip != "None"
