"""The ModelServer spec: typed, documented, validated. The CRD is generated from here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from tfops.podspec import PodSettings
from tfops.quantity import parse_quantity
from tfops.schema import Quantity, RawObject, Rule, parse, spec_field

GROUP = "serving.tfops.dev"
VERSION = "v1alpha1"
KIND = "ModelServer"
PLURAL = "modelservers"

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
LABEL_PATTERN = r"^[a-zA-Z0-9_]+$"
# A DNS subdomain, as Kubernetes names objects such as PersistentVolumeClaims.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# An image reference: no spaces or control characters (the apiserver would take
# them, the kubelet would not pull them).
IMAGE_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$"
# A `..` path segment, anywhere in a basePath (RE2 and Python read it alike).
PARENT_SEGMENT = r"(^|/)[.][.](/|$)"
MODEL_STORE = "/models"
DEFAULT_IMAGE_REPOSITORY = "tensorflow/serving"
DEFAULT_SERVING_VERSION = "2.19.1"
# Version numbers beyond 2^53 lose precision in JSON clients (and 2^63 overflows
# TF Serving's int64): a timestamp in milliseconds still fits.
MAX_VERSION = 2**53 - 1
# TF Serving alone (runtime, thread stacks, buffers) needs about this much; a
# smaller memory quantity is a unit typo ("512m" is 0.512 bytes).
MIN_MEMORY = "256Mi"
MAX_MEMORY = "64Ti"
MAX_MODEL_SIZE = "16Ti"
# What the images tfops knows may carry beyond the official tensorflow/serving.
IMAGE_FEATURES = ("jemalloc", "s3")
# Every source a Kubernetes Volume may name (core/v1 Volume, minus `name`); a unit
# test keeps it equal to the Kubernetes client's model.
VOLUME_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
)
# GPU fractions are summed in floating point on both sides (CEL and Python); a sum
# within this of the bound is taken as equal to it (0.1 + 0.2 under 0.3).
FRACTION_TOLERANCE = 1e-6
MIN_GPU_FRACTION = 0.01


def _qty_le(small: Quantity | None, large: Quantity | None) -> bool:
    return small is None or large is None or parse_quantity(small) <= parse_quantity(large)


def _qty_between(value: Quantity | None, low: str, high: str) -> bool:
    return value is None or parse_quantity(low) <= parse_quantity(value) <= parse_quantity(high)


def _cel_qty_between(field: str, low: str, high: str) -> str:
    quantity = f"quantity(string(self.{field}))"
    return (
        f"!has(self.{field}) || ({quantity}.compareTo(quantity('{low}')) >= 0"
        f" && {quantity}.compareTo(quantity('{high}')) <= 0)"
    )


@dataclass(frozen=True, kw_only=True)
class VersionPolicy:
    latest: int | None = spec_field(
        "Serve the N highest-numbered version directories found under basePath.",
        default=None,
        minimum=1,
        maximum=64,
    )
    specific: tuple[int, ...] | None = spec_field(
        "Serve exactly these versions (numeric directory names under basePath).",
        default=None,
        minItems=1,
        maxItems=32,
        item_minimum=0,
        item_maximum=MAX_VERSION,
        **{"x-kubernetes-list-type": "set"},
    )
    all: bool = spec_field(
        "Serve every version directory under basePath. Each one is loaded into memory, "
        "so it requires acknowledgeAllVersions: true.",
        default=False,
    )
    acknowledge_all_versions: bool = spec_field(
        "Confirms that all: true is intended although it loads every version into memory.",
        default=False,
    )

    def chosen(self) -> list[str]:
        return [
            name
            for name, on in (
                ("latest", self.latest is not None),
                ("specific", self.specific is not None),
                ("all", self.all),
            )
            if on
        ]

    RULES = (
        Rule(
            "(has(self.latest) ? 1 : 0) + (has(self.specific) ? 1 : 0)"
            " + (has(self.all) && self.all ? 1 : 0) <= 1",
            lambda p: len(p.chosen()) <= 1,
            "choose one of latest, specific or all",
        ),
        Rule(
            "!(has(self.all) && self.all)"
            " || (has(self.acknowledgeAllVersions) && self.acknowledgeAllVersions)",
            lambda p: not p.all or p.acknowledge_all_versions,
            "all: true loads every version directory into memory; set "
            "acknowledgeAllVersions: true to confirm, or use latest or specific",
            ".acknowledgeAllVersions",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str = spec_field(
        "Model name used by clients (REST /v1/models/NAME, gRPC model_spec.name). "
        "Letters, digits, '_', '.' and '-'.",
        pattern=NAME_PATTERN,
        maxLength=128,
    )
    base_path: str = spec_field(
        "Parent directory of the numeric version directories: an absolute path under "
        "/models (the mounted model storage) or a gs:// URI. s3:// needs an image built "
        "with S3 support (the official images have none since 2.7): declare it in "
        "imageProvides.",
        maxLength=1024,
    )
    platform: Literal["tensorflow"] = spec_field(
        "Model platform. Default tensorflow (SavedModel).",
        default="tensorflow",
    )
    version_policy: VersionPolicy | None = spec_field(
        "Which versions to serve. Default: latest 1 (the highest version number).",
        default=None,
    )
    version_labels: dict[str, int] | None = spec_field(
        "Named versions (e.g. stable: 47) clients can address as /labels/stable. Needs "
        "versionPolicy.specific, and a label may only point at a listed version.",
        default=None,
        keyPattern=LABEL_PATTERN,
        maxProperties=16,
        item_minimum=0,
        item_maximum=MAX_VERSION,
    )
    size: Quantity | None = spec_field(
        "Size of one version of this model in memory once loaded (e.g. 1.5Gi; `tfops "
        "inspect` measures it). Used to derive memory, the start-up budget and to refuse "
        "limits that cannot hold the models plus one version transition.",
        default=None,
    )
    gpu_memory_fraction: float | None = spec_field(
        "Share of the GPU's memory this model may use, in (0, 1]. The per-model shares "
        "add up to the process's --per_process_gpu_memory_fraction. At least 0.01 (TF "
        "Serving reads 0 as 'TensorFlow chooses').",
        default=None,
        minimum=MIN_GPU_FRACTION,
        maximum=1,
    )

    def policy(self) -> VersionPolicy:
        return self.version_policy or VersionPolicy(latest=1)

    RULES = (
        Rule(
            "(self.basePath.startsWith('/models/') || self.basePath.startsWith('s3://')"
            " || self.basePath.startsWith('gs://'))"
            f" && !self.basePath.matches('{PARENT_SEGMENT}')",
            lambda m: (
                m.base_path.startswith(("/models/", "s3://", "gs://"))
                and re.search(PARENT_SEGMENT, m.base_path) is None
            ),
            "basePath must be an absolute path under /models/ (the mounted model storage) "
            "or a gs:// URI (s3:// with an image that provides it), without a '..' segment",
            ".basePath",
        ),
        Rule(
            "!has(self.versionLabels) || self.versionLabels.size() == 0"
            " || (has(self.versionPolicy) && has(self.versionPolicy.specific))",
            lambda m: (
                not m.version_labels
                or (m.version_policy is not None and m.version_policy.specific is not None)
            ),
            "versionLabels need versionPolicy.specific: under latest or all, TF Serving "
            "chooses which versions load and a label could name one it never loads; list "
            "the versions with specific",
            ".versionLabels",
        ),
        Rule(
            "!has(self.versionLabels) || !has(self.versionPolicy)"
            " || !has(self.versionPolicy.specific)"
            " || self.versionLabels.all(k, self.versionLabels[k] in self.versionPolicy.specific)",
            lambda m: (
                not m.version_labels
                or m.version_policy is None
                or m.version_policy.specific is None
                or all(v in m.version_policy.specific for v in m.version_labels.values())
            ),
            "every version label must point at a version listed in versionPolicy.specific",
            ".versionLabels",
        ),
        Rule(
            "!has(self.size) || (quantity(string(self.size)).isGreaterThan(quantity('0'))"
            f" && quantity(string(self.size)).compareTo(quantity('{MAX_MODEL_SIZE}')) <= 0)",
            lambda m: (
                m.size is None or 0 < parse_quantity(m.size) <= parse_quantity(MAX_MODEL_SIZE)
            ),
            f"size must be greater than zero and at most {MAX_MODEL_SIZE} (e.g. 512Mi)",
            ".size",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ModelStorage:
    claim_name: str | None = spec_field(
        "Name of a PersistentVolumeClaim holding the models, mounted read-only at /models.",
        default=None,
        minLength=1,
        maxLength=253,
        pattern=OBJECT_NAME_PATTERN,
    )
    volume: RawObject | None = spec_field(
        "Any other Kubernetes volume source, as in a pod's volumes but without a name "
        "(e.g. nfs: {server: ..., path: ...}, csi: {...}), mounted read-only at /models.",
        default=None,
        maxProperties=2,
    )

    RULES = (
        Rule(
            "has(self.claimName) != has(self.volume)",
            lambda s: (s.claim_name is None) != (s.volume is None),
            "set exactly one of claimName or volume",
        ),
        Rule(
            "!has(self.volume) || !('name' in self.volume)",
            lambda s: s.volume is None or "name" not in s.volume,
            "volume must not carry a name (tfops names it models): give only its source, "
            "e.g. nfs: {server: nfs.example, path: /exports/models}",
            ".volume.name",
        ),
        Rule(
            "!has(self.volume) || self.volume.size() == 1"
            " || (self.volume.size() == 2 && 'name' in self.volume)",
            lambda s: s.volume is None or len({k for k in s.volume if k != "name"}) == 1,
            "volume must name exactly one volume source (e.g. nfs, csi, hostPath, "
            "persistentVolumeClaim)",
            ".volume",
        ),
        Rule(
            "!has(self.volume) || self.volume.all(k, k == 'name' || k in "
            + str(list(VOLUME_SOURCES)).replace('"', "'")
            + ")",
            lambda s: s.volume is None or all(k == "name" or k in VOLUME_SOURCES for k in s.volume),
            "volume names a source Kubernetes does not know; use one of "
            + ", ".join(VOLUME_SOURCES),
            ".volume",
        ),
        Rule(
            "!has(self.volume) || !('emptyDir' in self.volume)",
            lambda s: s.volume is None or "emptyDir" not in s.volume,
            "an emptyDir starts empty, so no model could be in it: use a volume that holds "
            "the models (claimName, nfs, csi, ...)",
            ".volume",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ResourceAmounts:
    memory: Quantity | None = spec_field(
        f"Memory, e.g. 4Gi; between {MIN_MEMORY} and {MAX_MEMORY}.", default=None
    )
    cpu: Quantity | None = spec_field("CPU, e.g. 2 or 1500m; at least 1m.", default=None)

    RULES = (
        Rule(
            _cel_qty_between("memory", MIN_MEMORY, MAX_MEMORY),
            lambda a: _qty_between(a.memory, MIN_MEMORY, MAX_MEMORY),
            f"memory must be between {MIN_MEMORY} (what TF Serving alone needs) and "
            f"{MAX_MEMORY}; note that m means milli: write Mi or Gi for bytes (512Mi, 4Gi)",
            ".memory",
        ),
        Rule(
            _cel_qty_between("cpu", "1m", "4096"),
            lambda a: _qty_between(a.cpu, "1m", "4096"),
            "cpu must be between 1m and 4096 cores (0 would leave the container unlimited)",
            ".cpu",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Resources:
    requests: ResourceAmounts | None = spec_field(
        "Requests. Memory defaults to the derived limit; CPU to 1.", default=None
    )
    limits: ResourceAmounts | None = spec_field(
        "Limits. Memory is derived from the models' sizes plus one version transition when "
        "omitted; CPU defaults to 2. Thread counts derive from the CPU limit.",
        default=None,
    )

    def get(self, kind: str, resource: str) -> Quantity | None:
        amounts = self.requests if kind == "requests" else self.limits
        return None if amounts is None else getattr(amounts, resource)

    RULES = (
        Rule(
            "!has(self.requests) || !has(self.limits) || !has(self.requests.memory)"
            " || !has(self.limits.memory) || quantity(string(self.requests.memory))"
            ".compareTo(quantity(string(self.limits.memory))) <= 0",
            lambda r: _qty_le(r.get("requests", "memory"), r.get("limits", "memory")),
            "requests.memory must not exceed limits.memory",
            ".requests",
        ),
        Rule(
            "!has(self.requests) || !has(self.limits) || !has(self.requests.cpu)"
            " || !has(self.limits.cpu) || quantity(string(self.requests.cpu))"
            ".compareTo(quantity(string(self.limits.cpu))) <= 0",
            lambda r: _qty_le(r.get("requests", "cpu"), r.get("limits", "cpu")),
            "requests.cpu must not exceed limits.cpu",
            ".requests",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Gpu:
    count: int = spec_field("GPUs per pod (nvidia.com/gpu).", minimum=1, maximum=16)
    memory_fraction: float | None = spec_field(
        "--per_process_gpu_memory_fraction, in [0.01, 1]. Default: the sum of the models' "
        "gpuMemoryFraction, or TensorFlow's choice when none is given.",
        default=None,
        minimum=MIN_GPU_FRACTION,
        maximum=1,
    )
    allow_growth: bool = spec_field(
        "Allocate GPU memory as needed instead of all at start (session config "
        "gpu_options.allow_growth).",
        default=False,
    )


@dataclass(frozen=True, kw_only=True)
class LargeBatchSplitting:
    max_execution_batch_size: int = spec_field(
        "Largest batch actually executed; bigger batches are split. At most maxBatchSize.",
        minimum=1,
    )


@dataclass(frozen=True, kw_only=True)
class Batching:
    max_batch_size: int = spec_field(
        "Largest batch formed (TF Serving's default is 1000).",
        default=128,
        minimum=1,
        maximum=100000,
    )
    batch_timeout_micros: int = spec_field(
        "How long a partial batch waits for more requests, in microseconds.",
        default=1000,
        minimum=1,
        maximum=10_000_000,
    )
    max_enqueued_batches: int = spec_field(
        "Queue length in batches; a full queue answers UNAVAILABLE.",
        default=100,
        minimum=1,
        maximum=100000,
    )
    num_batch_threads: int | None = spec_field(
        "Threads processing batches. Default: the CPU limit in whole cores.",
        default=None,
        minimum=1,
        maximum=1024,
    )
    allowed_batch_sizes: tuple[int, ...] | None = spec_field(
        "Batch sizes to pad to, increasing; the last must equal maxBatchSize.",
        default=None,
        minItems=1,
        maxItems=32,
        item_minimum=1,
        **{"x-kubernetes-list-type": "set"},
    )
    pad_variable_length_inputs: bool = spec_field(
        "Pad inputs of different lengths so they can share a batch.",
        default=False,
    )
    large_batch_splitting: LargeBatchSplitting | None = spec_field(
        "Split batches larger than maxExecutionBatchSize (enable_large_batch_splitting).",
        default=None,
    )

    RULES = (
        Rule(
            "!has(self.allowedBatchSizes) || self.allowedBatchSizes.isSorted()",
            lambda b: (
                b.allowed_batch_sizes is None
                or list(b.allowed_batch_sizes) == sorted(b.allowed_batch_sizes)
            ),
            "allowedBatchSizes must increase",
            ".allowedBatchSizes",
        ),
        Rule(
            "!has(self.allowedBatchSizes) || self.allowedBatchSizes.size() == 0"
            " || self.allowedBatchSizes[self.allowedBatchSizes"
            ".size() - 1] == (has(self.maxBatchSize) ? self.maxBatchSize : 128)",
            lambda b: (
                b.allowed_batch_sizes is None or b.allowed_batch_sizes[-1] == b.max_batch_size
            ),
            "the last of allowedBatchSizes must equal maxBatchSize",
            ".allowedBatchSizes",
        ),
        Rule(
            "!has(self.largeBatchSplitting) || self.largeBatchSplitting.maxExecutionBatchSize"
            " <= (has(self.maxBatchSize) ? self.maxBatchSize : 128)",
            lambda b: (
                b.large_batch_splitting is None
                or b.large_batch_splitting.max_execution_batch_size <= b.max_batch_size
            ),
            "largeBatchSplitting.maxExecutionBatchSize must not exceed maxBatchSize",
            ".largeBatchSplitting",
        ),
        Rule(
            "!has(self.largeBatchSplitting) || !has(self.allowedBatchSizes)"
            " || self.largeBatchSplitting.maxExecutionBatchSize in self.allowedBatchSizes",
            lambda b: (
                b.large_batch_splitting is None
                or b.allowed_batch_sizes is None
                or b.large_batch_splitting.max_execution_batch_size in b.allowed_batch_sizes
            ),
            "largeBatchSplitting.maxExecutionBatchSize must be one of allowedBatchSizes: TF "
            "Serving pads a split batch up to the next allowed size, which would exceed it",
            ".largeBatchSplitting",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Threads:
    intra_op: int | None = spec_field(
        "--tensorflow_intra_op_parallelism. Default: the CPU limit in whole cores.",
        default=None,
        minimum=1,
        maximum=1024,
    )
    inter_op: int | None = spec_field(
        "--tensorflow_inter_op_parallelism. Default: 2 (1 with a single core).",
        default=None,
        minimum=1,
        maximum=1024,
    )
    rest: int | None = spec_field(
        "--rest_api_num_threads. Default: 2 per core, at least 4.",
        default=None,
        minimum=1,
        maximum=4096,
    )
    grpc_max: int | None = spec_field(
        "--grpc_max_threads, the cap that stops gRPC thread explosions under bursts. "
        "Default: 4 per core, at least 8.",
        default=None,
        minimum=1,
        maximum=4096,
    )


@dataclass(frozen=True, kw_only=True)
class Probes:
    startup_budget_seconds: int | None = spec_field(
        "How long the first model load may take before the pod is restarted. Default: "
        "derived from the models' sizes (60 s + 90 s per GiB), 600 s when sizes are unknown.",
        default=None,
        minimum=10,
        maximum=7200,
    )
    liveness_period_seconds: int = spec_field(
        "Liveness check period after start-up.",
        default=10,
        minimum=1,
        maximum=300,
    )
    readiness_period_seconds: int = spec_field(
        "Readiness check period.",
        default=5,
        minimum=1,
        maximum=300,
    )


@dataclass(frozen=True, kw_only=True)
class ScalingPolicy:
    percent: int = spec_field(
        "Largest change per period, in percent of current replicas.", minimum=1, maximum=1000
    )
    period_seconds: int = spec_field("Length of one period.", default=60, minimum=1, maximum=1800)
    stabilization_window_seconds: int = spec_field(
        "How far back the autoscaler looks before changing direction.",
        default=0,
        minimum=0,
        maximum=3600,
    )


@dataclass(frozen=True, kw_only=True)
class Autoscaling:
    min_replicas: int = spec_field("Fewest replicas.", default=1, minimum=1, maximum=1000)
    max_replicas: int = spec_field("Most replicas.", minimum=1, maximum=1000)
    target_cpu_utilization: int | None = spec_field(
        "Average CPU utilisation to keep, in percent of requests. Default 70 when no "
        "target is given.",
        default=None,
        minimum=1,
        maximum=100,
        json_name="targetCPUUtilization",
    )
    target_memory_utilization: int | None = spec_field(
        "Average memory utilisation to keep, in percent of requests. Model memory does "
        "not shrink when replicas are added, so use it with care.",
        default=None,
        minimum=1,
        maximum=100,
    )
    scale_up: ScalingPolicy | None = spec_field(
        "Scale-up behaviour. Default +50% per minute.",
        default=None,
    )
    scale_down: ScalingPolicy | None = spec_field(
        "Scale-down behaviour. Default -10% per minute after 5 minutes of stability.",
        default=None,
    )

    RULES = (
        Rule(
            "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            lambda a: a.min_replicas <= a.max_replicas,
            "minReplicas must not exceed maxReplicas",
            ".minReplicas",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Monitoring:
    prometheus: bool = spec_field(
        "Serve Prometheus metrics on the REST port at /monitoring/prometheus/metrics.",
        default=True,
    )


@dataclass(frozen=True, kw_only=True)
class Promotion:
    grace_seconds: int = spec_field(
        "After a version change, keep serving the versions the spec no longer names this "
        "long (in-flight requests, clients pinned to a version number) before unloading.",
        default=30,
        minimum=0,
        maximum=86400,
    )
    timeout_seconds: int | None = spec_field(
        "Roll a version change back when the new versions are not AVAILABLE on every running "
        "pod within this time. Default: the start-up budget plus TF Serving's config and "
        "version-directory poll periods. It must leave TF Serving time to report a broken "
        "version (status.effective.failureReportSeconds).",
        default=None,
        minimum=10,
        maximum=86400,
    )


@dataclass(frozen=True, kw_only=True)
class Traffic:
    drain_seconds: int = spec_field(
        "Before a serving pod stops (rollout, scale-down, leak restart) it keeps serving "
        "this long while Services and load balancers stop sending to it: a preStop sleep "
        "(the kubelet's sleep action, Kubernetes 1.30 or newer). TF Serving has no SIGTERM "
        "handling, so requests still in flight when it is signalled are cut. 0: no preStop "
        "(for older clusters).",
        default=15,
        minimum=0,
        maximum=600,
    )
    max_connection_age_seconds: int = spec_field(
        "gRPC clients keep one HTTP/2 connection to one pod, so pods a scale-out adds get no "
        "gRPC traffic. TF Serving closes connections older than this "
        "(--grpc_channel_arguments=grpc.max_connection_age_ms) and clients reconnect, "
        "spreading over the pods. 0: connections live for ever.",
        default=300,
        minimum=0,
        maximum=86400,
    )
    max_connection_age_grace_seconds: int = spec_field(
        "How long calls in flight on a connection closed for its age may still finish "
        "(grpc.max_connection_age_grace_ms).",
        default=30,
        minimum=0,
        maximum=3600,
    )
    headless_service: bool = spec_field(
        "Also render the headless Service <name>-headless (clusterIP None, ready pods "
        "only) for gRPC clients that balance over the pods themselves "
        "(dns:///<name>-headless.<namespace>:8500 with round_robin). Default false.",
        default=False,
    )
    restart_when_config_not_applied: bool = spec_field(
        "Restart a pod that reports ConfigNotApplied (its models.config polling wedged: "
        "only a fresh process reads the config again), through the memory guard's safe "
        "path: one pod at a time, the rest of the fleet ready, the PodDisruptionBudget, "
        "maxRestartsPerHour and the operator-wide cap. Default false: reported only.",
        default=False,
    )


@dataclass(frozen=True, kw_only=True)
class MemoryGuard:
    enabled: bool = spec_field(
        "Watch every serving pod's working set for leaks. Default true.",
        default=True,
    )
    mode: Literal["Alert", "Restart"] = spec_field(
        "Alert: condition, Event and metrics only. Restart: also evict a leaking pod "
        "(through the Eviction API, so the PodDisruptionBudget holds) before it is "
        "OOM-killed. Default Restart.",
        default="Restart",
    )
    sample_interval_seconds: int = spec_field(
        "How often the working set is read from metrics.k8s.io (metrics-server refreshes "
        "every 10-60 s).",
        default=15,
        minimum=10,
        maximum=300,
    )
    warmup_seconds: int = spec_field(
        "Memory a pod uses this soon after it started is its model load and warm-up, not a leak.",
        default=300,
        minimum=0,
        maximum=7200,
    )
    restart_before_seconds: int = spec_field(
        "Restart a leaking pod once its projected OOM (its floor plus the largest "
        "excursion above it meeting the limit) is this close, or closer than 15% of "
        "the time the leak has been seen (a leak seen growing for a day is restarted "
        "about 3.6 hours ahead).",
        default=3600,
        minimum=60,
        maximum=86400,
    )
    restart_at_fraction: float = spec_field(
        "Deprecated, no effect (kept so existing manifests stay valid): a restart comes "
        "only when the projected OOM is within restartBeforeSeconds, never on usage "
        "alone (a pod high but stable, or swinging daily, is not near an OOM).",
        default=0.8,
        minimum=0.1,
        maximum=0.95,
    )
    max_restarts_per_hour: int = spec_field(
        "At most this many leak restarts per ModelServer per hour; more leaks are reported "
        "but not acted on.",
        default=2,
        minimum=1,
        maximum=20,
    )


@dataclass(frozen=True, kw_only=True)
class ModelServerSpec:
    models: tuple[ModelSpec, ...] = spec_field(
        "The models this fleet serves.",
        minItems=1,
        maxItems=64,
        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    model_storage: ModelStorage | None = spec_field(
        "Where models live, mounted read-only at /models. Required when a basePath is a "
        "path; not needed when every basePath is an s3:// or gs:// URI.",
        default=None,
    )
    image: str | None = spec_field(
        "TF Serving image. Default tensorflow/serving:2.19.1 (the -gpu variant with GPUs).",
        default=None,
        minLength=1,
        maxLength=512,
        pattern=IMAGE_PATTERN,
    )
    image_provides: tuple[Literal["jemalloc", "s3"], ...] | None = spec_field(
        "What the image has beyond the official tensorflow/serving image: jemalloc "
        "(libjemalloc.so.2 in /usr/lib/x86_64-linux-gnu, as in the tfops serving image; "
        "needed for allocator: jemalloc) and s3 (a TF Serving built with S3 file system "
        "support; needed for s3:// base paths).",
        default=None,
        maxItems=len(IMAGE_FEATURES),
        **{"x-kubernetes-list-type": "set"},
    )
    serving_version: str | None = spec_field(
        "TF Serving version of the image, when its tag is not a version (a digest or a "
        "custom tag). tfops renders only the flags this version knows.",
        default=None,
        pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$",
        maxLength=16,
    )
    replicas: int = spec_field(
        "Pods in the fleet (ignored while autoscaling is set).",
        default=1,
        minimum=0,
        maximum=1000,
    )
    resources: Resources | None = spec_field("Memory and CPU of each pod.", default=None)
    gpu: Gpu | None = spec_field("GPUs for each pod.", default=None)
    batching: Batching | None = spec_field(
        "Server-side batching (--enable_batching); off when omitted. Changes restart pods.",
        default=None,
    )
    threads: Threads | None = spec_field(
        "Thread pools. Defaults come from the CPU limit, never from the node's core count.",
        default=None,
    )
    probes: Probes | None = spec_field("Start-up, liveness and readiness checks.", default=None)
    autoscaling: Autoscaling | None = spec_field(
        "A HorizontalPodAutoscaler (autoscaling/v2); none when omitted.",
        default=None,
    )
    monitoring: Monitoring | None = spec_field("Metrics. Default: Prometheus on.", default=None)
    memory_guard: MemoryGuard | None = spec_field(
        "Leak detection and restarts before the OOM. On by default.",
        default=None,
    )
    promotion: Promotion | None = spec_field(
        "How version changes of served models proceed: old and new side by side, labels "
        "moved once the new versions are AVAILABLE everywhere, automatic rollback.",
        default=None,
    )
    traffic: Traffic | None = spec_field(
        "How pods are taken out of traffic before they stop, how gRPC connections are "
        "spread over pods, and what is done about a pod whose config never applies. "
        "Default: 15 s drain, connections re-made every 300 s, no headless Service, "
        "ConfigNotApplied reported only.",
        default=None,
    )
    allocator: Literal["glibc", "jemalloc"] = spec_field(
        "Memory allocator. jemalloc (LD_PRELOAD) fragments less under TF Serving's "
        "allocation pattern; the official image has no jemalloc, so it needs an image "
        "that does (the tfops serving image) and imageProvides: [jemalloc].",
        default="glibc",
    )
    pod: PodSettings | None = spec_field(
        "Where the serving pods run and who they are: node selection, tolerations, "
        "affinity, spread, priority, image pull secrets, ServiceAccount, extra labels, "
        "annotations and environment. A change rolls the fleet (maxUnavailable 0).",
        default=None,
    )
    version_poll_seconds: int | None = spec_field(
        "How often TF Serving lists each basePath for version directories "
        "(--file_system_poll_wait_seconds; its own default of 1 s costs a listing per "
        "model per second, billed on gs://). A new version is found at most this long "
        "after it is configured. Default 15, or 30 when a basePath is a URI. Changes "
        "restart pods.",
        default=None,
        minimum=1,
        maximum=3600,
    )

    def gpu_fractions(self) -> list[float]:
        return [m.gpu_memory_fraction for m in self.models if m.gpu_memory_fraction is not None]

    def provides(self, feature: str) -> bool:
        return feature in (self.image_provides or ())

    RULES = (
        Rule(
            "self.models.all(m, self.models.filter(n, n.name == m.name).size() == 1)",
            lambda s: len({m.name for m in s.models}) == len(s.models),
            "model names must be unique",
            ".models",
        ),
        Rule(
            "has(self.modelStorage) || self.models.all(m, !m.basePath.startsWith('/'))",
            lambda s: (
                s.model_storage is not None
                or all(not m.base_path.startswith("/") for m in s.models)
            ),
            "a basePath under /models needs modelStorage (a claimName or a volume)",
            ".modelStorage",
        ),
        Rule(
            "self.models.map(m, has(m.gpuMemoryFraction) ? m.gpuMemoryFraction : 0.0).sum()"
            f" <= 1.0 + {FRACTION_TOLERANCE}",
            lambda s: sum(s.gpu_fractions()) <= 1.0 + FRACTION_TOLERANCE,
            "the models' gpuMemoryFraction values must add up to at most 1.0",
            ".models",
        ),
        Rule(
            "has(self.gpu) || !self.models.exists(m, has(m.gpuMemoryFraction))",
            lambda s: s.gpu is not None or not s.gpu_fractions(),
            "gpuMemoryFraction needs spec.gpu (set gpu.count)",
            ".gpu",
        ),
        Rule(
            "!has(self.gpu) || !has(self.gpu.memoryFraction) || self.models.map(m, "
            "has(m.gpuMemoryFraction) ? m.gpuMemoryFraction : 0.0).sum()"
            f" <= self.gpu.memoryFraction + {FRACTION_TOLERANCE}",
            lambda s: (
                s.gpu is None
                or s.gpu.memory_fraction is None
                or sum(s.gpu_fractions()) <= s.gpu.memory_fraction + FRACTION_TOLERANCE
            ),
            "the models' gpuMemoryFraction values must add up to at most gpu.memoryFraction",
            ".gpu",
        ),
        Rule(
            "!self.models.exists(m, m.basePath.startsWith('s3://'))"
            " || (has(self.imageProvides) && 's3' in self.imageProvides)",
            lambda s: (
                not any(m.base_path.startswith("s3://") for m in s.models) or s.provides("s3")
            ),
            "s3:// base paths cannot load on the official tensorflow/serving images (S3 "
            "support left TF Serving in 2.7: 'File system scheme s3 not implemented', and "
            "the pod never starts); use gs://, a volume under /models (claimName, or a CSI "
            "S3 driver), or an image built with S3 support and imageProvides: [s3]",
            ".models",
        ),
        Rule(
            "!has(self.allocator) || self.allocator != 'jemalloc'"
            " || (has(self.imageProvides) && 'jemalloc' in self.imageProvides)",
            lambda s: s.allocator != "jemalloc" or s.provides("jemalloc"),
            "allocator: jemalloc needs an image that has libjemalloc.so.2 (the official "
            "tensorflow/serving images do not: the LD_PRELOAD would be ignored); use the "
            "tfops serving image (serving_image/) and set imageProvides: [jemalloc]",
            ".allocator",
        ),
    )


# The ModelServer's own name: it names the Service and the ConfigMap <name>-config,
# and pods are named <name>-<hash>-<suffix>.
NAME_MAX_LENGTH = 50
MODELSERVER_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_RULE = Rule(
    f"self.metadata.name.size() <= {NAME_MAX_LENGTH} && "
    f"self.metadata.name.matches('{MODELSERVER_NAME_PATTERN}')",
    lambda name: (
        isinstance(name, str)
        and len(name) <= NAME_MAX_LENGTH
        and re.fullmatch(MODELSERVER_NAME_PATTERN.strip("^$"), name) is not None
    ),
    f"metadata.name must be at most {NAME_MAX_LENGTH} lowercase letters, digits or '-', "
    "starting with a letter (it names the Service and the ConfigMap <name>-config)",
    "metadata.name",
)


def parse_spec(data: Any) -> ModelServerSpec:
    """Parse and validate a ModelServer's spec. Raises tfops.schema.SpecInvalid."""
    return parse(ModelServerSpec, data, "spec")
