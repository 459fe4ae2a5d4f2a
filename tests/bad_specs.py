"""Bad ModelServer specs, each with the field its error must name and a piece of
the message. Used twice: against the operator's own parser (unit) and against
the apiserver, whose CRD schema and CEL rules must refuse the same input."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VALID_SPEC: dict[str, Any] = {
    "modelStorage": {"claimName": "models"},
    "models": [
        {
            "name": "ranker",
            "basePath": "/models/ranker",
            "size": "100Mi",
            "versionPolicy": {"specific": [47, 48]},
            "versionLabels": {"stable": 47},
        }
    ],
    "batching": {"maxBatchSize": 64, "allowedBatchSizes": [16, 64]},
    "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
}


# Every section set, so random changes reach every rule.
RICH_SPEC: dict[str, Any] = {
    **copy.deepcopy(VALID_SPEC),
    "models": [{**VALID_SPEC["models"][0], "gpuMemoryFraction": 0.3}],
    "gpu": {"count": 1, "memoryFraction": 0.5},
    "image": "tensorflow/serving:2.19.1-gpu",
    "resources": {"limits": {"memory": "4Gi", "cpu": "2"}},
    "threads": {"grpcMax": 8},
    "probes": {"startupBudgetSeconds": 120},
    "memoryGuard": {"mode": "Alert"},
    "promotion": {"graceSeconds": 5},
    "pod": {
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "labels": {"team": "search"},
        "env": [{"name": "A", "value": "1"}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "minDomains": 2,
            }
        ],
    },
}


@dataclass(frozen=True)
class BadSpec:
    id: str
    change: Callable[[dict[str, Any]], None]
    path: str
    message: str
    # The apiserver's own wording, when it differs (built-in list and pattern checks).
    api_path: str | None = None
    api_message: str | None = None

    def spec(self) -> dict[str, Any]:
        spec = copy.deepcopy(VALID_SPEC)
        self.change(spec)
        return spec


def _model(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec["models"][0])


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting a dotted path (numbers index lists); None deletes."""

    def change(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[int(last) if last.isdigit() else last] = value

    return change


def _add_model(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        spec["models"].append({"name": "second", "basePath": "/models/second", **fields})

    return change


def _many(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        for each in changes:
            each(spec)

    return change


BAD_SPECS = [
    BadSpec("no-models", _set("models", []), "spec.models", "at least 1"),
    BadSpec(
        "name-with-space",
        _set("models.0.name", "my model"),
        "spec.models[0].name",
        "^[A-Za-z0-9_.-]+$",
    ),
    BadSpec(
        "name-with-slash", _set("models.0.name", "a/b"), "spec.models[0].name", "^[A-Za-z0-9_.-]+$"
    ),
    BadSpec(
        "name-with-quote-and-newline",
        _set("models.0.name", 'evil"\n}'),
        "spec.models[0].name",
        "^[A-Za-z0-9_.-]+$",
    ),
    BadSpec(
        "duplicate-model-names",
        _add_model(name="ranker"),
        "spec.models",
        "model names must be unique",
        api_path="spec.models[1]",
        api_message="Duplicate value",
    ),
    BadSpec(
        "relative-base-path",
        _set("models.0.basePath", "models/ranker"),
        "spec.models[0].basePath",
        "absolute path under /models/",
    ),
    BadSpec(
        "base-path-outside-the-store",
        _set("models.0.basePath", "/etc/ranker"),
        "spec.models[0].basePath",
        "absolute path under /models/",
    ),
    BadSpec(
        "base-path-climbing-out",
        _set("models.0.basePath", "/models/../etc"),
        "spec.models[0].basePath",
        "without a '..' segment",
    ),
    BadSpec(
        "http-base-path",
        _set("models.0.basePath", "http://example.com/m"),
        "spec.models[0].basePath",
        "or a gs:// URI",
    ),
    BadSpec(
        "unknown-platform",
        _set("models.0.platform", "pytorch"),
        "spec.models[0].platform",
        "tensorflow",
    ),
    BadSpec(
        "two-version-policies",
        _set("models.0.versionPolicy", {"latest": 2, "specific": [47]}),
        "spec.models[0].versionPolicy",
        "choose one of latest, specific or all",
    ),
    BadSpec(
        "all-versions-without-acknowledgement",
        _many(_set("models.0.versionPolicy", {"all": True}), _set("models.0.versionLabels", None)),
        "spec.models[0].versionPolicy.acknowledgeAllVersions",
        "acknowledgeAllVersions: true",
    ),
    BadSpec(
        "latest-zero",
        _set("models.0.versionPolicy", {"latest": 0}),
        "spec.models[0].versionPolicy.latest",
        "1",
    ),
    BadSpec(
        "label-outside-specific",
        _set("models.0.versionLabels", {"stable": 46}),
        "spec.models[0].versionLabels",
        "versionPolicy.specific",
    ),
    BadSpec(
        "label-with-dash",
        _set("models.0.versionLabels", {"not-ok": 47}),
        "spec.models[0].versionLabels",
        "[a-zA-Z0-9_]+",
    ),
    BadSpec("zero-size", _set("models.0.size", "0"), "spec.models[0].size", "greater than zero"),
    BadSpec(
        "negative-size",
        _set("models.0.size", "-1Gi"),
        "spec.models[0].size",
        "greater than zero",
    ),
    BadSpec(
        "size-not-a-quantity",
        _set("models.0.size", "big"),
        "spec.models[0].size",
        "quantity",
        api_message="should match",
    ),
    BadSpec(
        "gpu-fraction-zero",
        _many(_set("gpu", {"count": 1}), _set("models.0.gpuMemoryFraction", 0)),
        "spec.models[0].gpuMemoryFraction",
        "0",
    ),
    BadSpec(
        "gpu-fraction-above-one",
        _many(_set("gpu", {"count": 1}), _set("models.0.gpuMemoryFraction", 1.5)),
        "spec.models[0].gpuMemoryFraction",
        "1",
    ),
    BadSpec(
        "gpu-fractions-summing-above-one",
        _many(
            _set("gpu", {"count": 1}),
            _set("models.0.gpuMemoryFraction", 0.6),
            _add_model(gpuMemoryFraction=0.7),
        ),
        "spec.models",
        "add up to at most 1.0",
    ),
    BadSpec(
        "gpu-fractions-above-the-process-fraction",
        _many(
            _set("gpu", {"count": 1, "memoryFraction": 0.5}),
            _set("models.0.gpuMemoryFraction", 0.4),
            _add_model(gpuMemoryFraction=0.3),
        ),
        "spec.gpu",
        "at most gpu.memoryFraction",
    ),
    BadSpec(
        "gpu-fraction-without-gpu",
        _set("models.0.gpuMemoryFraction", 0.5),
        "spec.gpu",
        "needs spec.gpu",
    ),
    BadSpec("gpu-count-zero", _set("gpu", {"count": 0}), "spec.gpu.count", "1"),
    BadSpec(
        "last-batch-size-not-max",
        _set("batching.allowedBatchSizes", [16, 32]),
        "spec.batching.allowedBatchSizes",
        "must equal maxBatchSize",
    ),
    BadSpec(
        "batch-sizes-decreasing",
        _set("batching.allowedBatchSizes", [64, 16, 64]),
        "spec.batching.allowedBatchSizes",
        "repeat",
        api_message="Duplicate value",
    ),
    BadSpec(
        "batch-sizes-unsorted",
        _set("batching.allowedBatchSizes", [32, 16, 64]),
        "spec.batching.allowedBatchSizes",
        "must increase",
    ),
    BadSpec(
        "zero-max-batch-size",
        _many(_set("batching.maxBatchSize", 0), _set("batching.allowedBatchSizes", None)),
        "spec.batching.maxBatchSize",
        "1",
    ),
    BadSpec(
        "zero-batch-timeout",
        _set("batching.batchTimeoutMicros", 0),
        "spec.batching.batchTimeoutMicros",
        "1",
    ),
    BadSpec(
        "negative-batch-timeout",
        _set("batching.batchTimeoutMicros", -5),
        "spec.batching.batchTimeoutMicros",
        "1",
    ),
    BadSpec(
        "split-above-max-batch",
        _set("batching.largeBatchSplitting", {"maxExecutionBatchSize": 128}),
        "spec.batching.largeBatchSplitting",
        "must not exceed maxBatchSize",
    ),
    BadSpec(
        "min-replicas-above-max",
        _set("autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "must not exceed maxReplicas",
    ),
    BadSpec(
        "cpu-target-above-100",
        _set("autoscaling.targetCPUUtilization", 150),
        "spec.autoscaling.targetCPUUtilization",
        "100",
    ),
    BadSpec("negative-replicas", _set("replicas", -1), "spec.replicas", "0"),
    BadSpec(
        "memory-request-above-limit",
        _set("resources", {"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}}),
        "spec.resources.requests",
        "requests.memory must not exceed limits.memory",
    ),
    BadSpec(
        "cpu-request-above-limit",
        _set("resources", {"requests": {"cpu": "3"}, "limits": {"cpu": "2"}}),
        "spec.resources.requests",
        "requests.cpu must not exceed limits.cpu",
    ),
    BadSpec("zero-threads", _set("threads", {"grpcMax": 0}), "spec.threads.grpcMax", "1"),
    BadSpec(
        "zero-startup-budget",
        _set("probes", {"startupBudgetSeconds": 0}),
        "spec.probes.startupBudgetSeconds",
        "10",
    ),
    BadSpec(
        "path-base-without-storage",
        _set("modelStorage", None),
        "spec.modelStorage",
        "needs modelStorage",
    ),
    BadSpec(
        "storage-with-claim-and-volume",
        _set("modelStorage", {"claimName": "models", "volume": {"emptyDir": {}}}),
        "spec.modelStorage",
        "exactly one of claimName or volume",
    ),
    BadSpec("unknown-allocator", _set("allocator", "tcmalloc"), "spec.allocator", "jemalloc"),
    BadSpec(
        "bad-serving-version", _set("servingVersion", "latest"), "spec.servingVersion", "[0-9]"
    ),
    BadSpec("empty-image", _set("image", ""), "spec.image", "1"),
    # -- TF Serving as it really behaves (the reference's §8) --
    BadSpec(
        "s3-on-the-official-image",
        _set("models.0.basePath", "s3://bucket/ranker"),
        "spec.models",
        "imageProvides: [s3]",
    ),
    BadSpec(
        "jemalloc-on-the-official-image",
        _set("allocator", "jemalloc"),
        "spec.allocator",
        "imageProvides: [jemalloc]",
    ),
    BadSpec(
        "unknown-image-feature",
        _set("imageProvides", ["tcmalloc"]),
        "spec.imageProvides[0]",
        "jemalloc, s3",
        api_message="Unsupported value",
    ),
    BadSpec(
        "labels-under-latest",
        _set("models.0.versionPolicy", {"latest": 2}),
        "spec.models[0].versionLabels",
        "versionLabels need versionPolicy.specific",
    ),
    BadSpec(
        "labels-without-a-policy",
        _set("models.0.versionPolicy", None),
        "spec.models[0].versionLabels",
        "versionLabels need versionPolicy.specific",
    ),
    BadSpec(
        "gpu-fraction-that-rounds-to-zero",
        _many(_set("gpu", {"count": 1}), _set("models.0.gpuMemoryFraction", 0.001)),
        "spec.models[0].gpuMemoryFraction",
        "0.01",
    ),
    BadSpec(
        "gpu-process-fraction-integer-zero",
        _set("gpu", {"count": 1, "memoryFraction": 0}),
        "spec.gpu.memoryFraction",
        "0.01",
    ),
    BadSpec(
        "split-size-that-is-not-an-allowed-size",
        _set("batching.largeBatchSplitting", {"maxExecutionBatchSize": 32}),
        "spec.batching.largeBatchSplitting",
        "must be one of allowedBatchSizes",
    ),
    BadSpec(
        "empty-allowed-batch-sizes",
        _set("batching.allowedBatchSizes", []),
        "spec.batching.allowedBatchSizes",
        "at least 1",
        api_message="should have at least 1 items",
    ),
    BadSpec(
        "version-poll-of-zero",
        _set("versionPollSeconds", 0),
        "spec.versionPollSeconds",
        "1",
    ),
    # -- quantities, as numbers and strings --
    BadSpec(
        "integer-memory-limit-below-zero",
        _set("resources", {"limits": {"memory": -1}}),
        "spec.resources.limits.memory",
        "between 256Mi",
    ),
    BadSpec(
        "integer-memory-request-below-zero",
        _set("resources", {"requests": {"memory": -1}}),
        "spec.resources.requests.memory",
        "between 256Mi",
    ),
    BadSpec(
        "integer-cpu-limit-below-zero",
        _set("resources", {"limits": {"cpu": -2}}),
        "spec.resources.limits.cpu",
        "between 1m",
    ),
    BadSpec(
        "zero-memory-limit",
        _set("resources", {"limits": {"memory": "0"}}),
        "spec.resources.limits.memory",
        "between 256Mi",
    ),
    BadSpec(
        "zero-cpu-limit-would-be-unlimited",
        _set("resources", {"limits": {"cpu": "0"}}),
        "spec.resources.limits.cpu",
        "unlimited",
    ),
    BadSpec(
        "milli-bytes-meant-as-mebibytes",
        _set("resources", {"limits": {"memory": "512m"}}),
        "spec.resources.limits.memory",
        "m means milli",
    ),
    BadSpec(
        "a-one-byte-memory-limit",
        _set("resources", {"limits": {"memory": "1"}}),
        "spec.resources.limits.memory",
        "between 256Mi",
    ),
    BadSpec(
        "memory-beyond-any-node",
        _set("resources", {"limits": {"memory": "100Ei"}}),
        "spec.resources.limits.memory",
        "and 64Ti",
    ),
    BadSpec(
        "size-with-a-huge-exponent",
        _set("models.0.size", "1e40"),
        "spec.models[0].size",
        "at most 16Ti",
    ),
    BadSpec(
        "quantity-too-long",
        _set("models.0.size", "1" * 40),
        "spec.models[0].size",
        "at most 32 characters",
        api_message="may not be more than 32 bytes",
    ),
    # -- model storage the Deployment could not use --
    BadSpec(
        "volume-with-its-own-name",
        _set("modelStorage", {"volume": {"name": "mine", "nfs": {"server": "a", "path": "/m"}}}),
        "spec.modelStorage.volume.name",
        "must not carry a name",
        api_message="must be of type object",
    ),
    BadSpec(
        "volume-with-two-sources",
        _set("modelStorage", {"volume": {"nfs": {"server": "a", "path": "/m"}, "csi": {}}}),
        "spec.modelStorage.volume",
        "exactly one volume source",
    ),
    BadSpec(
        "volume-with-an-unknown-source",
        _set("modelStorage", {"volume": {"bogusDisk": {}}}),
        "spec.modelStorage.volume",
        "does not know",
    ),
    BadSpec(
        "empty-volume",
        _set("modelStorage", {"volume": {}}),
        "spec.modelStorage.volume",
        "exactly one volume source",
    ),
    BadSpec(
        "empty-dir-as-model-storage",
        _set("modelStorage", {"volume": {"emptyDir": {}}}),
        "spec.modelStorage.volume",
        "emptyDir starts empty",
    ),
    BadSpec(
        "empty-claim-name",
        _set("modelStorage", {"claimName": ""}),
        "spec.modelStorage.claimName",
        "at least 1 characters",
        api_message="should be at least 1 chars long",
    ),
    # -- strings and numbers at their edges --
    BadSpec(
        "negative-label-value",
        _set("models.0.versionLabels", {"stable": -1}),
        "spec.models[0].versionLabels.stable",
        "at least 0",
        api_message="greater than or equal to 0",
    ),
    BadSpec(
        "base-path-ending-in-a-parent-segment",
        _set("models.0.basePath", "/models/.."),
        "spec.models[0].basePath",
        "without a '..' segment",
    ),
    BadSpec(
        "image-with-a-space",
        _set("image", "tensorflow/serving:2.19.1 latest"),
        "spec.image",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "name-with-a-trailing-newline",
        _set("models.0.name", "ranker\n"),
        "spec.models[0].name",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "version-beyond-json-precision",
        _many(
            _set("models.0.versionPolicy", {"specific": [2**53]}),
            _set("models.0.versionLabels", None),
        ),
        "spec.models[0].versionPolicy.specific[0]",
        "at most 9007199254740991",
        api_message="less than or equal to 9007199254740991",
    ),
    BadSpec(
        "too-many-labels",
        _set("models.0.versionLabels", {f"l{i}": 47 for i in range(17)}),
        "spec.models[0].versionLabels",
        "at most 16 entries",
        api_message="must have at most 16 items",
    ),
    BadSpec(
        "fractional-replicas",
        _set("replicas", 1.5),
        "spec.replicas",
        "must be an integer",
        api_message="must be of type integer",
    ),
    # Placement and identity (spec.pod), refused as Kubernetes would refuse the pod.
    BadSpec(
        "pod-label-tfops-owns",
        _set("pod", {"labels": {"app.kubernetes.io/managed-by": "helm"}}),
        "spec.pod.labels",
        "tfops' own",
    ),
    BadSpec(
        "pod-label-under-tfops-prefix",
        _set("pod", {"labels": {"serving.tfops.dev/modelserver": "other"}}),
        "spec.pod.labels",
        "tfops' own",
    ),
    BadSpec(
        "pod-label-value-too-long",
        _set("pod", {"labels": {"team": "x" * 64}}),
        "spec.pod.labels.team",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "pod-label-key-with-space",
        _set("pod", {"labels": {"my team": "a"}}),
        "spec.pod.labels",
        "keys must match",
    ),
    BadSpec(
        "pod-annotation-prometheus",
        _set("pod", {"annotations": {"prometheus.io/scrape": "false"}}),
        "spec.pod.annotations",
        "spec.monitoring",
    ),
    BadSpec(
        "pod-env-tfops-sets",
        _set("pod", {"env": [{"name": "OMP_NUM_THREADS", "value": "64"}]}),
        "spec.pod.env",
        "may not set",
    ),
    BadSpec(
        "pod-env-duplicate",
        _set("pod", {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        "spec.pod.env",
        "unique",
    ),
    BadSpec(
        "pod-env-value-and-value-from",
        _set("pod", {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"x": 1}}}]}),
        "spec.pod.env[0].valueFrom",
        "not both",
    ),
    BadSpec(
        "pod-env-name-with-equals",
        _set("pod", {"env": [{"name": "A=B", "value": "1"}]}),
        "spec.pod.env[0].name",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "pod-env-from-two-sources",
        _set("pod", {"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]}),
        "spec.pod.envFrom[0]",
        "exactly one of configMapRef or secretRef",
    ),
    BadSpec(
        "pod-toleration-without-key-or-exists",
        _set("pod", {"tolerations": [{"value": "x", "effect": "NoSchedule"}]}),
        "spec.pod.tolerations[0].operator",
        "needs operator: Exists",
    ),
    BadSpec(
        "pod-toleration-exists-with-value",
        _set("pod", {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}),
        "spec.pod.tolerations[0].value",
        "matches any value",
    ),
    BadSpec(
        "pod-toleration-seconds-without-no-execute",
        _set(
            "pod", {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}
        ),
        "spec.pod.tolerations[0].tolerationSeconds",
        "NoExecute",
    ),
    BadSpec(
        "pod-toleration-unknown-effect",
        _set("pod", {"tolerations": [{"key": "k", "effect": "Sometimes"}]}),
        "spec.pod.tolerations[0].effect",
        "is not one of",
        api_message="Unsupported value",
    ),
    BadSpec(
        "pod-node-selector-value-with-slash",
        _set("pod", {"nodeSelector": {"pool": "gpu/a100"}}),
        "spec.pod.nodeSelector.pool",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "pod-affinity-gt-not-an-integer",
        _set(
            "pod",
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "gpus", "operator": "Gt", "values": ["many"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
        ),
        "spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].values",
        "exactly one integer",
    ),
    BadSpec(
        "pod-anti-affinity-without-topology-key",
        _set(
            "pod",
            {
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"a": "b"}}}
                        ]
                    }
                }
            },
        ),
        "spec.pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
        ".topologyKey",
        "is required",
        api_message="Required value",
    ),
    BadSpec(
        "pod-selector-in-without-values",
        _set(
            "pod",
            {
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
                    }
                ]
            },
        ),
        "spec.pod.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values",
        "In and NotIn need values",
    ),
    BadSpec(
        "pod-spread-min-domains-with-schedule-anyway",
        _set(
            "pod",
            {
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "minDomains": 2,
                    }
                ]
            },
        ),
        "spec.pod.topologySpreadConstraints[0].minDomains",
        "DoNotSchedule",
    ),
    BadSpec(
        "pod-service-account-uppercase",
        _set("pod", {"serviceAccountName": "Models"}),
        "spec.pod.serviceAccountName",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "pod-image-pull-secret-empty-name",
        _set("pod", {"imagePullSecrets": [{"name": ""}]}),
        "spec.pod.imagePullSecrets[0].name",
        "must match",
        api_message="should match",
    ),
    BadSpec(
        "pod-env-value-from-two-sources",
        _set(
            "pod",
            {
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {
                            "fieldRef": {"fieldPath": "metadata.name"},
                            "secretKeyRef": {"name": "s", "key": "k"},
                        },
                    }
                ]
            },
        ),
        "spec.pod.env[0].valueFrom",
        "exactly one of fieldRef",
    ),
]
