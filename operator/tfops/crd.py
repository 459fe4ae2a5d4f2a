"""The ModelServer CustomResourceDefinition, generated from tfops.model.

`tfops crd` prints it; `make crds` writes crds/; a test fails when the checked-in
file differs from what this generates.
"""

from __future__ import annotations

from typing import Any

import yaml

from tfops.model import GROUP, KIND, NAME_RULE, PLURAL, VERSION, ModelServerSpec
from tfops.schema import openapi_schema

CRD_NAME = f"{PLURAL}.{GROUP}"


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status", "reason", "message", "lastTransitionTime"],
        "properties": {
            "type": {
                "type": "string",
                "description": "Ready, Progressing, Degraded or MemoryLeakSuspected.",
            },
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "description": "CamelCase reason for the status."},
            "message": {"type": "string", "description": "What is going on and what to do."},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    }


def _status_schema() -> dict[str, Any]:
    def integer(description: str) -> dict[str, Any]:
        return {"type": "integer", "format": "int64", "description": description}

    def string(description: str) -> dict[str, Any]:
        return {"type": "string", "description": description}

    version_state = {
        "type": "object",
        "properties": {
            "version": integer("Version number."),
            "state": string(
                "TF Serving's state on every ready pod when they agree "
                "(START, LOADING, AVAILABLE, UNLOADING, END), else Mixed."
            ),
            "availablePods": integer("Ready pods on which this version is AVAILABLE."),
            "error": string("TF Serving's error when the load failed."),
        },
    }
    return {
        "type": "object",
        "description": "Observed state, written by the operator.",
        # Room for fields later tfops versions add, kept across downgrades.
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "observedGeneration": integer("The spec generation this status describes."),
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "replicas": integer("Pods of the current and older revisions."),
            "readyReplicas": integer("Ready pods."),
            "replicasSummary": string("ready/desired pods, for kubectl get."),
            "modelsSummary": string("Available/configured model versions, for kubectl get."),
            "models": {
                "type": "array",
                "description": "Per model: the versions TF Serving reports on the ready pods.",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": string("Model name."),
                        "versions": {"type": "array", "items": version_state},
                        "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
            },
            "effective": {
                "type": "object",
                "description": "Settings tfops derived; what the pods actually run with.",
                "properties": {
                    "image": string("Serving image."),
                    "memoryRequest": string("Memory request per pod."),
                    "memoryLimit": string("Memory limit per pod."),
                    "memoryBasis": string(
                        "Where the memory came from: declared sizes, spec.resources or default."
                    ),
                    "cpuRequest": string("CPU request per pod."),
                    "cpuLimit": string("CPU limit per pod."),
                    "intraOpThreads": integer("--tensorflow_intra_op_parallelism."),
                    "interOpThreads": integer("--tensorflow_inter_op_parallelism."),
                    "restThreads": integer("--rest_api_num_threads."),
                    "grpcMaxThreads": integer("--grpc_max_threads."),
                    "batchThreads": integer("Batching threads."),
                    "startupBudgetSeconds": integer("How long the first load may take."),
                    "versionPollSeconds": integer("--file_system_poll_wait_seconds."),
                    "loadRetries": integer("--max_num_load_retries."),
                    "loadRetryIntervalSeconds": integer("--load_retry_interval_micros, in s."),
                    "failureReportSeconds": integer(
                        "How long TF Serving may take to report a broken version as END."
                    ),
                    "promotionTimeoutSeconds": integer(
                        "When an unfinished version change is rolled back."
                    ),
                    "gpuMemoryFraction": {
                        "type": "number",
                        "description": "--per_process_gpu_memory_fraction.",
                    },
                },
            },
            "memoryGuard": {
                "type": "object",
                "description": "What the memory guard did.",
                "properties": {
                    "restartsTotal": integer("Leaking pods restarted since creation."),
                    "restarts": {
                        "type": "array",
                        "description": "The most recent leak restarts.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "pod": string("The restarted pod."),
                                "time": {"type": "string", "format": "date-time"},
                                "action": string(
                                    "evict (Eviction API) or rollout (a replacement first)."
                                ),
                                "slopeMiBPerMinute": {
                                    "type": "number",
                                    "description": "Rise of its memory.",
                                },
                                "projectedSecondsToOOM": integer("How far off its OOM was."),
                                "usagePercent": {
                                    "type": "number",
                                    "description": "Share of its limit in use.",
                                },
                            },
                        },
                    },
                },
            },
            "oomKills": {
                "type": "object",
                "description": "Containers the kernel killed for exceeding their memory limit.",
                "properties": {
                    "total": integer("OOM kills seen since the ModelServer was created."),
                    "lastPod": string("Pod of the most recent OOM kill."),
                    "lastTime": {"type": "string", "format": "date-time"},
                    "seen": {
                        "type": "array",
                        "description": "Recent kills already counted (pod/finish time).",
                        "items": {"type": "string"},
                    },
                },
            },
        },
    }


def render_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(
        ModelServerSpec, "What the TF Serving fleet serves and how it runs."
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "tfops"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": KIND.lower(),
                "kind": KIND,
                "listKind": f"{KIND}List",
                "shortNames": ["ms"],
                "categories": ["tfops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {
                            "name": "Replicas",
                            "type": "string",
                            "jsonPath": ".status.replicasSummary",
                        },
                        {"name": "Models", "type": "string", "jsonPath": ".status.modelsSummary"},
                        {
                            "name": "Memory",
                            "type": "string",
                            "jsonPath": ".status.effective.memoryLimit",
                        },
                        {
                            "name": "Leak-Restarts",
                            "type": "integer",
                            "jsonPath": ".status.memoryGuard.restartsTotal",
                        },
                        {
                            "name": "OOM-Kills",
                            "type": "integer",
                            "priority": 1,
                            "jsonPath": ".status.oomKills.total",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A fleet of TensorFlow Serving pods serving one or more "
                            "models, kept converged by tfops.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {"rule": NAME_RULE.cel, "message": NAME_RULE.message}
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: Any) -> str:
    return str(yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False, width=100))


def render_chart_crd() -> str:
    """The CRD as a Helm template (charts/tfops/templates/crd.yaml): behind
    crds.enabled, and kept on uninstall with crds.keep. Same source as crds/."""
    text = to_yaml(render_crd())
    if "{{" in text:
        raise ValueError("the CRD text holds '{{', which Helm would try to render")
    head, rest = text.split("metadata:\n", 1)
    keep = (
        "metadata:\n"
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
        "  labels:\n"
        '    {{- include "tfops.labels" . | nindent 4 }}\n'
    )
    return (
        "{{- if .Values.crds.enabled }}\n"
        "# Generated from operator/tfops/model.py by `make crds`: do not edit.\n"
        f"{head}{keep}{rest}"
        "{{- end }}\n"
    )
