"""The Deployment running tensorflow_model_server."""

from __future__ import annotations

import math
from typing import Any

from tfops import flags
from tfops.model import MODEL_STORE, ModelServerSpec
from tfops.owned import config_map_name
from tfops.plan import (
    JEMALLOC_PATH,
    STARTUP_PROBE_PERIOD_SECONDS,
    Plan,
)
from tfops.podspec import PodSettings
from tfops.quantity import format_bytes, format_cpu
from tfops.render.common import (
    CONFIG_DIR,
    CONTAINER_NAME,
    GROUP,
    GRPC_PORT,
    READINESS_CONDITION,
    REST_PORT,
    Owner,
    labels,
    metadata,
    selector_labels,
)
from tfops.render.configmap import (
    BATCHING_FILE,
    MODELS_FILE,
    MONITORING_FILE,
    PROMETHEUS_PATH,
    SESSION_FILE,
    startup_config_hash,
)
from tfops.schema import to_json

STARTUP_HASH_ANNOTATION = f"{GROUP}/startup-config-hash"
# Non-root like the restricted Pod Security profile wants, and above 10000 so it
# matches no user of the node; the model volume is read-only, so no ownership of
# files is needed (only read permission for others, as exports usually have).
RUN_AS_USER = 10001
# Disk outside the volumes: /tmp and the container's log (which the kubelet rotates
# at 10 MiB x 5). TF Serving writes little; bounded so one pod cannot push its node
# into DiskPressure, and requested so the scheduler counts it.
TMP_SIZE_LIMIT = "1Gi"
EPHEMERAL_STORAGE_REQUEST = "256Mi"
EPHEMERAL_STORAGE_LIMIT = "2Gi"


def render_flags(plan: Plan, files: dict[str, str]) -> list[str]:
    """tensorflow_model_server flags, only those the image's version knows."""
    values: list[tuple[str, object]] = [
        ("port", GRPC_PORT),
        ("rest_api_port", REST_PORT),
        ("model_config_file", f"{CONFIG_DIR}/{MODELS_FILE}"),
        ("model_config_file_poll_wait_seconds", plan.config_poll_seconds),
        ("file_system_poll_wait_seconds", plan.version_poll_seconds),
        ("allow_version_labels_for_unavailable_models", True),
        ("max_num_load_retries", plan.load_retries),
        ("load_retry_interval_micros", plan.load_retry_interval_seconds * 1_000_000),
        ("tensorflow_intra_op_parallelism", plan.intra_op_threads),
        ("tensorflow_inter_op_parallelism", plan.inter_op_threads),
        ("rest_api_num_threads", plan.rest_threads),
        ("grpc_max_threads", plan.grpc_max_threads),
    ]
    if plan.knows_flag("enable_grpc_healthcheck_service"):
        values.append(("enable_grpc_healthcheck_service", True))
    if plan.grpc_channel_arguments:
        values.append(("grpc_channel_arguments", plan.grpc_channel_arguments))
    if BATCHING_FILE in files:
        values += [
            ("enable_batching", True),
            ("batching_parameters_file", f"{CONFIG_DIR}/{BATCHING_FILE}"),
        ]
    if MONITORING_FILE in files:
        values.append(("monitoring_config_file", f"{CONFIG_DIR}/{MONITORING_FILE}"))
    if plan.gpu_memory_fraction is not None:
        values.append(("per_process_gpu_memory_fraction", f"{plan.gpu_memory_fraction:.4f}"))
    if SESSION_FILE in files:
        values.append(("tensorflow_session_config_file", f"{CONFIG_DIR}/{SESSION_FILE}"))
    return flags.render(plan.serving_version, values)


def _probes(plan: Plan) -> dict[str, Any]:
    # TF Serving opens its ports only after every configured model has loaded,
    # so "the gRPC health service answers" means "the initial load is done"
    # without naming a model (a model change then needs no pod change). Whether
    # every configured version is AVAILABLE is checked by the operator through
    # the REST model-status API and shown as the Ready condition.
    def check() -> dict[str, Any]:
        if plan.knows_flag("enable_grpc_healthcheck_service"):
            return {"grpc": {"port": GRPC_PORT}}
        return {"tcpSocket": {"port": GRPC_PORT}}

    return {
        # Liveness and readiness wait for this one: a long load is never killed.
        "startupProbe": {
            **check(),
            "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(
                plan.startup_budget_seconds / STARTUP_PROBE_PERIOD_SECONDS
            ),
        },
        "readinessProbe": {
            **check(),
            "periodSeconds": plan.readiness_period_seconds,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            **check(),
            "periodSeconds": plan.liveness_period_seconds,
            "timeoutSeconds": 10,
            "failureThreshold": 6,
        },
    }


def _env(plan: Plan) -> list[dict[str, str]]:
    # TensorFlow's and OpenMP's own defaults read the node's core count, not the
    # container's CPU limit.
    env = [
        {"name": "OMP_NUM_THREADS", "value": str(plan.intra_op_threads)},
        {"name": "TF_NUM_INTRAOP_THREADS", "value": str(plan.intra_op_threads)},
        {"name": "TF_NUM_INTEROP_THREADS", "value": str(plan.inter_op_threads)},
    ]
    return env


def _model_volume(spec: ModelServerSpec) -> dict[str, Any] | None:
    storage = spec.model_storage
    if storage is None:
        return None
    if storage.claim_name is not None:
        return {
            "name": "models",
            "persistentVolumeClaim": {"claimName": storage.claim_name, "readOnly": True},
        }
    return {"name": "models", **(storage.volume or {})}


def _placement(owner: Owner, pod: PodSettings) -> dict[str, Any]:
    """Scheduling and identity from spec.pod, and a spread over nodes by default so a
    node loss does not take every replica (per revision: a rollout's new pods spread
    among themselves)."""
    fields: dict[str, Any] = {}
    for name, value in (
        ("nodeSelector", pod.node_selector),
        ("tolerations", pod.tolerations),
        ("affinity", pod.affinity),
        ("priorityClassName", pod.priority_class_name),
        ("imagePullSecrets", pod.image_pull_secrets),
        ("serviceAccountName", pod.service_account_name),
    ):
        if value:
            fields[name] = to_json(value)
    spread = pod.topology_spread_constraints
    if spread is None:
        fields["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(owner)},
                "matchLabelKeys": ["pod-template-hash"],
            }
        ]
    elif spread:
        fields["topologySpreadConstraints"] = to_json(spread)
    return fields


def render_deployment(owner: Owner, plan: Plan, files: dict[str, str]) -> dict[str, Any]:
    spec = plan.spec
    resources: dict[str, dict[str, str]] = {
        "requests": {
            "cpu": format_cpu(plan.cpu_request),
            "memory": format_bytes(plan.memory.request_bytes),
            "ephemeral-storage": EPHEMERAL_STORAGE_REQUEST,
        },
        "limits": {
            "cpu": format_cpu(plan.cpu_limit),
            "memory": format_bytes(plan.memory.limit_bytes),
            "ephemeral-storage": EPHEMERAL_STORAGE_LIMIT,
        },
    }
    if plan.gpu_count:
        resources["limits"]["nvidia.com/gpu"] = str(plan.gpu_count)
    env = _env(plan)
    if plan.jemalloc:
        # Only with an image that declares it has the library (spec.imageProvides):
        # the loader ignores a missing preload with a warning, so nothing would tell.
        env.append({"name": "LD_PRELOAD", "value": JEMALLOC_PATH})

    pod = spec.pod or PodSettings()
    env += to_json(pod.env or ())
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(owner.name)}},
        # Bounded, so a runaway writer is evicted rather than filling the node's disk.
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
    ]
    model_volume = _model_volume(spec)
    if model_volume is not None:
        mounts.insert(0, {"name": "models", "mountPath": MODEL_STORE, "readOnly": True})
        volumes.insert(0, model_volume)

    annotations = {STARTUP_HASH_ANNOTATION: startup_config_hash(files)}
    if plan.prometheus:
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(REST_PORT),
            "prometheus.io/path": PROMETHEUS_PATH,
        }

    container = {
        "name": CONTAINER_NAME,
        "image": plan.image,
        "command": ["tensorflow_model_server"],
        "args": render_flags(plan, files),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
        ],
        "env": env,
        **({"envFrom": to_json(pod.env_from)} if pod.env_from else {}),
        "resources": resources,
        "volumeMounts": mounts,
        # TF Serving exits when its initial config cannot load (a failed model, a
        # refused label): the end of its log then becomes the container's
        # termination message, which tfops shows in status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        **_probes(plan),
    }
    if plan.drain_seconds:
        # Endpoints are removed while the pod still serves; TF Serving dies on the
        # SIGTERM that follows. The kubelet's own sleep: no shell in the image needed.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": plan.drain_seconds}}}
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner)},
        "strategy": {
            "type": "RollingUpdate",
            # New pods come up (and load their models) before old ones go.
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": plan.startup_budget_seconds + 300,
        "template": {
            # The user's labels and annotations first: tfops' own always win (and
            # the spec refuses keys that would collide).
            "metadata": {
                "labels": {**(pod.labels or {}), **labels(owner)},
                "annotations": {**(pod.annotations or {}), **annotations},
            },
            "spec": {
                **_placement(owner, pod),
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUN_AS_USER,
                    "runAsGroup": RUN_AS_USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "automountServiceAccountToken": bool(pod.automount_service_account_token),
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": plan.termination_grace_seconds,
                "containers": [container],
                "volumes": volumes,
                # Ready (and in the Service's endpoints) only while the operator
                # says every model is served here (tfops.readiness).
                "readinessGates": [{"conditionType": READINESS_CONDITION}],
            },
        },
    }
    # With autoscaling the HPA owns the replica count: leaving the field out of
    # our apply hands it over instead of fighting it.
    if spec.autoscaling is None:
        deployment_spec = {"replicas": plan.replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, owner.name),
        "spec": deployment_spec,
    }
