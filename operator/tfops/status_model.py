"""The ModelServer's status as typed dataclasses: the source of the status schema
in the CRD (as tfops.model is of the spec's) and of the keys the operator owns.
compute_status (tfops.status) builds the dicts these describe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from tfops.schema import json_name, openapi_schema, spec_field

TIME = {"format": "date-time"}


@dataclass(frozen=True, kw_only=True)
class Condition:
    type: str = spec_field("Ready, Progressing, Degraded or MemoryLeakSuspected.")
    status: Literal["True", "False", "Unknown"] = spec_field("Whether the condition holds.")
    reason: str = spec_field("CamelCase reason for the status.")
    message: str = spec_field("What is going on and what to do.")
    last_transition_time: str = spec_field("When the status last changed.", **TIME)
    observed_generation: int | None = spec_field(
        "The spec generation this condition describes.", default=None
    )


@dataclass(frozen=True, kw_only=True)
class VersionState:
    version: int | None = spec_field("Version number.", default=None)
    state: str | None = spec_field(
        "TF Serving's state on every ready pod when they agree "
        "(START, LOADING, AVAILABLE, UNLOADING, END), else Mixed.",
        default=None,
    )
    available_pods: int | None = spec_field(
        "Ready pods on which this version is AVAILABLE.", default=None
    )
    error: str | None = spec_field("TF Serving's error when the load failed.", default=None)


@dataclass(frozen=True, kw_only=True)
class ModelState:
    name: str | None = spec_field("Model name.", default=None)
    versions: tuple[VersionState, ...] | None = spec_field(
        "The versions TF Serving reports.", default=None
    )
    labels: dict[str, int] | None = spec_field(
        "The version each label names, as TF Serving serves it.", default=None
    )


@dataclass(frozen=True, kw_only=True)
class Effective:
    image: str | None = spec_field("Serving image.", default=None)
    memory_request: str | None = spec_field("Memory request per pod.", default=None)
    memory_limit: str | None = spec_field("Memory limit per pod.", default=None)
    memory_basis: str | None = spec_field(
        "Where the memory came from: declared sizes, spec.resources or default.", default=None
    )
    cpu_request: str | None = spec_field("CPU request per pod.", default=None)
    cpu_limit: str | None = spec_field("CPU limit per pod.", default=None)
    intra_op_threads: int | None = spec_field("--tensorflow_intra_op_parallelism.", default=None)
    inter_op_threads: int | None = spec_field("--tensorflow_inter_op_parallelism.", default=None)
    rest_threads: int | None = spec_field("--rest_api_num_threads.", default=None)
    grpc_max_threads: int | None = spec_field("--grpc_max_threads.", default=None)
    batch_threads: int | None = spec_field("Batching threads.", default=None)
    startup_budget_seconds: int | None = spec_field(
        "How long the first load may take.", default=None
    )
    version_poll_seconds: int | None = spec_field("--file_system_poll_wait_seconds.", default=None)
    load_retries: int | None = spec_field("--max_num_load_retries.", default=None)
    load_retry_interval_seconds: int | None = spec_field(
        "--load_retry_interval_micros, in s.", default=None
    )
    failure_report_seconds: int | None = spec_field(
        "How long TF Serving may take to report a broken version as END.", default=None
    )
    promotion_timeout_seconds: int | None = spec_field(
        "When an unfinished version change is rolled back.", default=None
    )
    gpu_memory_fraction: float | None = spec_field(
        "--per_process_gpu_memory_fraction.", default=None
    )


@dataclass(frozen=True, kw_only=True)
class LeakRestart:
    pod: str | None = spec_field("The restarted pod.", default=None)
    time: str | None = spec_field("When.", default=None, **TIME)
    action: str | None = spec_field(
        "evict (Eviction API) or rollout (a replacement first).", default=None
    )
    reason: str | None = spec_field(
        "MemoryLeak, or ConfigNotApplied (spec.traffic.restartWhenConfigNotApplied).",
        default=None,
    )
    slope_mib_per_minute: float | None = spec_field(
        "Rise of its memory.", default=None, json_name="slopeMiBPerMinute"
    )
    projected_seconds_to_oom: int | None = spec_field(
        "How far off its OOM was.", default=None, json_name="projectedSecondsToOOM"
    )
    usage_percent: float | None = spec_field("Share of its limit in use.", default=None)


@dataclass(frozen=True, kw_only=True)
class MemoryGuardStatus:
    restarts_total: int | None = spec_field(
        "Pods restarted since creation (leaks, and config not applied when opted in).",
        default=None,
    )
    restarts: tuple[LeakRestart, ...] | None = spec_field("The most recent restarts.", default=None)


@dataclass(frozen=True, kw_only=True)
class OomKills:
    total: int | None = spec_field(
        "OOM kills seen since the ModelServer was created.", default=None
    )
    last_pod: str | None = spec_field("Pod of the most recent OOM kill.", default=None)
    last_time: str | None = spec_field("When it was killed.", default=None, **TIME)
    seen: tuple[str, ...] | None = spec_field(
        "Recent kills already counted (pod/finish time).", default=None
    )


@dataclass(frozen=True, kw_only=True)
class Transition:
    model: str | None = spec_field("The model changing versions.", default=None)
    step: str | None = spec_field("Loading, Draining, Done, RolledBack or Refused.", default=None)
    generation: int | None = spec_field("The spec generation that asked for it.", default=None)
    started_at: str | None = spec_field("When it started.", default=None, **TIME)
    settled_at: str | None = spec_field(
        "When the label moved (the grace period starts).", default=None, **TIME
    )
    message: str | None = spec_field("Why it was rolled back or refused.", default=None)
    # Also `from` and `to` (versions and labels before and asked for), kept as
    # written: `versions` is null under a latest policy, and a typed field would
    # have the apiserver prune the null and the status differ from what tfops wrote.


@dataclass(frozen=True, kw_only=True)
class ModelServerStatus:
    observed_generation: int | None = spec_field(
        "The spec generation this status describes.", default=None
    )
    conditions: tuple[Condition, ...] | None = spec_field(
        "Ready, Progressing, Degraded and MemoryLeakSuspected.",
        default=None,
        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = spec_field("Pods of the current and older revisions.", default=None)
    ready_replicas: int | None = spec_field("Ready pods.", default=None)
    replicas_summary: str | None = spec_field("ready/desired pods, for kubectl get.", default=None)
    models_summary: str | None = spec_field(
        "Available/configured model versions, for kubectl get.", default=None
    )
    models: tuple[ModelState, ...] | None = spec_field(
        "Per model: the versions TF Serving reports on the ready pods.", default=None
    )
    effective: Effective | None = spec_field(
        "Settings tfops derived; what the pods actually run with.", default=None
    )
    promotions: tuple[Transition, ...] | None = spec_field(
        "Version changes in flight or just finished, one per model.",
        default=None,
        **{"item_x-kubernetes-preserve-unknown-fields": True},
    )
    memory_guard: MemoryGuardStatus | None = spec_field("What the memory guard did.", default=None)
    oom_kills: OomKills | None = spec_field(
        "Containers the kernel killed for exceeding their memory limit.", default=None
    )


# The status keys tfops writes (and deletes when they no longer apply).
OWNED_KEYS: tuple[str, ...] = tuple(json_name(f) for f in dataclasses.fields(ModelServerStatus))


def status_schema() -> dict[str, Any]:
    return openapi_schema(
        ModelServerStatus,
        "Observed state, written by the operator.",
        # Room for fields later tfops versions add, kept across downgrades.
        **{"x-kubernetes-preserve-unknown-fields": True},
    )
