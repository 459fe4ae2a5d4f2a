"""Effective settings derived from a valid spec: memory, CPU, threads, start-up budget,
GPU share, image and the TF Serving version whose flags we may render.

Pure. Also refuses what the CRD schema cannot express (a memory limit too small for
the declared models plus one version transition), with the numbers and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from decimal import Decimal

from tfops import flags
from tfops.flags import MINIMUM_SERVING_VERSION
from tfops.model import (
    DEFAULT_IMAGE_REPOSITORY,
    DEFAULT_SERVING_VERSION,
    MAX_MEMORY,
    ModelServerSpec,
    Probes,
    Promotion,
    Traffic,
)
from tfops.quantity import (
    GiB,
    MiB,
    format_bytes,
    human_bytes,
    parse_bytes,
    parse_quantity,
    round_up_bytes,
)
from tfops.schema import SpecError, SpecInvalid

# What TF Serving itself holds besides models: runtime, thread stacks, gRPC/REST buffers.
SERVER_OVERHEAD_BYTES = 256 * MiB
# Field rule of thumb (field reports): steady state needs 2-3x the model's size. We derive
# with the middle of that range and refuse limits below its low end.
DERIVE_FACTOR = 2.5
REFUSE_FACTOR = 2.0
# Used when a model's size is unknown and no memory limit is given.
DEFAULT_MEMORY_LIMIT = 2 * GiB
DEFAULT_CPU_REQUEST = Decimal(1)
DEFAULT_CPU_LIMIT = Decimal(2)
# Start-up budget: field reports measured 100 MB ~ 10-30 s, 1 GB ~ 1-2 min, 5 GB+ ~ 3-8 min.
# 60 s + 90 s/GiB stays above the top of each range.
STARTUP_BASE_SECONDS = 60
STARTUP_SECONDS_PER_GIB = 90
STARTUP_UNKNOWN_SECONDS = 600
# The budget lives in the pod template, so a new value rolls the fleet. Coarse
# steps keep ordinary model changes (hot-reloaded) from doing that.
STARTUP_STEPS_SECONDS = (60, 120, 180, 300, 480, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
STARTUP_PROBE_PERIOD_SECONDS = 10
# TF Serving reads models.config again this often: model and version changes
# reach running pods without a restart.
CONFIG_POLL_SECONDS = 15
# How often version directories are listed (--file_system_poll_wait_seconds): a
# version named in models.config loads only once a listing has seen it.
VERSION_POLL_SECONDS = 15
VERSION_POLL_URI_SECONDS = 30
# A failed load is retried this often (TF Serving: 5 times, a minute apart, so a
# broken version stays LOADING for ~5 min). tfops retries twice, a tenth of the
# start-up budget apart (1-60 s): transient storage errors still get a second
# chance, and TF Serving's own error reaches END well within the budget.
LOAD_RETRIES = 2
LOAD_RETRY_MAX_SECONDS = 60
# What one failed load attempt is assumed to take when checking that a promotion
# time-out leaves TF Serving time to report the failure.
FAILED_ATTEMPT_SECONDS = 10
# Kubernetes' default grace period, kept when the drain is short; a drain gets this
# margin on top, so the kubelet's SIGKILL never lands inside the preStop sleep.
DEFAULT_TERMINATION_GRACE_SECONDS = 30
TERMINATION_MARGIN_SECONDS = 10
JEMALLOC_PATH = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


@dataclass(frozen=True)
class MemoryPlan:
    request_bytes: int
    limit_bytes: int
    # "declared sizes", "spec.resources" or "default"
    basis: str
    # bytes the declared models need at the low end of the rule, with one
    # transition; None when a size is unknown
    needed_bytes: int | None


@dataclass(frozen=True)
class Plan:
    """Everything the renderers and the reconcile need, derived once from the spec
    (which it carries, for the parts used as written)."""

    spec: ModelServerSpec
    image: str
    serving_version: tuple[int, ...]
    replicas: int
    memory: MemoryPlan
    cpu_request: Decimal
    cpu_limit: Decimal
    intra_op_threads: int
    inter_op_threads: int
    rest_threads: int
    grpc_max_threads: int
    batch_threads: int
    startup_budget_seconds: int
    gpu_count: int
    gpu_memory_fraction: float | None
    gpu_allow_growth: bool
    prometheus: bool
    version_poll_seconds: int
    load_retry_interval_seconds: int
    load_retries: int = LOAD_RETRIES
    config_poll_seconds: int = CONFIG_POLL_SECONDS
    jemalloc: bool = False
    # Version transitions (tfops.promotion): how long a retired version keeps
    # serving, and when a transition that is not done is rolled back.
    promotion_grace_seconds: int = 0
    promotion_timeout_seconds: int = 0
    liveness_period_seconds: int = 0
    readiness_period_seconds: int = 0
    # Graceful stop: the preStop sleep, and a grace period that outlasts it.
    drain_seconds: int = 0
    termination_grace_seconds: int = 30
    # --grpc_channel_arguments ("" renders no flag).
    grpc_channel_arguments: str = ""

    def knows_flag(self, flag: str) -> bool:
        return flags.knows(self.serving_version, flag)

    @property
    def failure_report_seconds(self) -> int:
        """The longest TF Serving takes to report a broken version as END after it was
        written into models.config: the next config poll, the next listing of its
        directory, and every load attempt with the retry intervals between them."""
        return (
            self.config_poll_seconds
            + self.version_poll_seconds
            + (self.load_retries + 1) * FAILED_ATTEMPT_SECONDS
            + self.load_retries * self.load_retry_interval_seconds
        )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _image_and_version(
    spec: ModelServerSpec, errors: list[SpecError]
) -> tuple[str, tuple[int, ...]]:
    gpu_suffix = "-gpu" if spec.gpu is not None else ""
    image = spec.image or f"{DEFAULT_IMAGE_REPOSITORY}:{DEFAULT_SERVING_VERSION}{gpu_suffix}"
    if spec.serving_version:
        version = _version_tuple(spec.serving_version)
    else:
        tag = image.rsplit("@", 1)[0].rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        match = re.match(r"^([0-9]+\.[0-9]+(\.[0-9]+)?)(-gpu)?$", tag)
        if not match:
            errors.append(
                SpecError(
                    "spec.servingVersion",
                    f"the TF Serving version of image {image!r} cannot be read from its tag; "
                    "set servingVersion (e.g. 2.19.1) so tfops renders only flags it knows",
                )
            )
            return image, _version_tuple(DEFAULT_SERVING_VERSION)
        version = _version_tuple(match[1])
    if version[:2] < MINIMUM_SERVING_VERSION:
        errors.append(
            SpecError(
                "spec.image" if not spec.serving_version else "spec.servingVersion",
                f"TF Serving {'.'.join(map(str, version))} is older than 2.5, which tfops needs "
                "(--grpc_max_threads); use tensorflow/serving:2.19.1 or newer",
            )
        )
    return image, version


def loaded_versions(spec: ModelServerSpec) -> list[int | None]:
    """How many versions of each model are held in memory; None when unknowable (all)."""
    counts: list[int | None] = []
    for model in spec.models:
        policy = model.policy()
        if policy.all:
            counts.append(None)
        elif policy.specific is not None:
            counts.append(len(policy.specific))
        else:
            counts.append(policy.latest or 1)
    return counts


def model_bytes(spec: ModelServerSpec) -> tuple[int, int] | None:
    """(bytes of every loaded version, bytes of the largest single version), or None
    when any size or version count is unknown."""
    sizes = [None if m.size is None else parse_bytes(m.size) for m in spec.models]
    counts = loaded_versions(spec)
    if any(s is None for s in sizes) or any(c is None for c in counts):
        return None
    known_sizes = [s for s in sizes if s is not None]
    total = sum(s * c for s, c in zip(known_sizes, counts, strict=True) if c is not None)
    return total, max(known_sizes)


def _memory_plan(spec: ModelServerSpec, errors: list[SpecError]) -> MemoryPlan:
    resources = spec.resources
    limit_q = resources.get("limits", "memory") if resources else None
    request_q = resources.get("requests", "memory") if resources else None
    sizes = model_bytes(spec)
    needed = None
    derived = None
    if sizes is not None:
        total, largest = sizes
        # One transition: TF Serving loads a new version before unloading the old.
        needed = SERVER_OVERHEAD_BYTES + math.ceil(REFUSE_FACTOR * (total + largest))
        derived = round_up_bytes(SERVER_OVERHEAD_BYTES + DERIVE_FACTOR * (total + largest))
    if limit_q is not None:
        limit = parse_bytes(limit_q)
        if needed is not None and limit < needed:
            assert sizes is not None
            errors.append(
                SpecError(
                    "spec.resources.limits.memory",
                    f"{limit_q} cannot hold the declared models: {human_bytes(sizes[0])} of "
                    f"loaded versions plus one version transition ({human_bytes(sizes[1])}) at "
                    f"{REFUSE_FACTOR:g}x, plus {human_bytes(SERVER_OVERHEAD_BYTES)} for the "
                    f"server, needs at least {format_bytes(round_up_bytes(needed))}; raise "
                    f"the limit (tfops derives {format_bytes(derived or 0)} when it is "
                    "omitted) or serve fewer versions",
                )
            )
        request = parse_bytes(request_q) if request_q is not None else limit
        return MemoryPlan(request, limit, "spec.resources", needed)
    if any(m.policy().all for m in spec.models):
        errors.append(
            SpecError(
                "spec.resources.limits.memory",
                "is required when a model uses versionPolicy.all: tfops cannot count the "
                "versions it would load; set a limit or use latest/specific",
            )
        )
    if derived is not None:
        request = parse_bytes(request_q) if request_q is not None else derived
        if request > derived:
            errors.append(
                SpecError(
                    "spec.resources.requests.memory",
                    f"{request_q} exceeds the derived limit {format_bytes(derived)}; "
                    "set limits.memory too",
                )
            )
        if derived > parse_bytes(MAX_MEMORY):
            errors.append(
                SpecError(
                    "spec.models",
                    f"the declared sizes need {format_bytes(derived)} per pod, more than "
                    f"{MAX_MEMORY}; serve fewer versions or split the models over fleets",
                )
            )
        return MemoryPlan(request, derived, "declared sizes", needed)
    request = parse_bytes(request_q) if request_q is not None else DEFAULT_MEMORY_LIMIT
    limit = max(DEFAULT_MEMORY_LIMIT, request)
    return MemoryPlan(request, limit, "default", None)


def _cpu(spec: ModelServerSpec) -> tuple[Decimal, Decimal]:
    resources = spec.resources
    request_q = resources.get("requests", "cpu") if resources else None
    limit_q = resources.get("limits", "cpu") if resources else None
    request = parse_quantity(request_q) if request_q is not None else None
    limit = parse_quantity(limit_q) if limit_q is not None else None
    if limit is None:
        limit = max(DEFAULT_CPU_LIMIT, request or DEFAULT_CPU_REQUEST)
    if request is None:
        request = min(DEFAULT_CPU_REQUEST, limit)
    return request, limit


def _startup_budget(spec: ModelServerSpec) -> int:
    if spec.probes and spec.probes.startup_budget_seconds:
        return spec.probes.startup_budget_seconds
    sizes = model_bytes(spec)
    if sizes is None:
        return STARTUP_UNKNOWN_SECONDS
    seconds = STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * sizes[0] / GiB
    return next(
        (step for step in STARTUP_STEPS_SECONDS if step >= seconds), STARTUP_STEPS_SECONDS[-1]
    )


def _version_poll(spec: ModelServerSpec) -> int:
    if spec.version_poll_seconds is not None:
        return spec.version_poll_seconds
    if any("://" in m.base_path for m in spec.models):
        return VERSION_POLL_URI_SECONDS
    return VERSION_POLL_SECONDS


def _gpu_fraction(spec: ModelServerSpec) -> float | None:
    """--per_process_gpu_memory_fraction, or None for TensorFlow's choice. Sums are
    floating point: clamped to 1 and rounded so the flag never reads 0."""
    if spec.gpu is None:
        return None
    fraction = spec.gpu.memory_fraction
    if fraction is None and spec.gpu_fractions():
        fraction = sum(spec.gpu_fractions())
    return None if fraction is None else min(1.0, round(fraction, 4))


def _grpc_channel_arguments(traffic: Traffic) -> str:
    """TF Serving splits the flag on ',' then '=' and passes values that parse as
    int32 as ints (server.cc:99-109, :396-405), so milliseconds stay below 2^31."""
    if traffic.max_connection_age_seconds == 0:
        return ""
    return (
        f"grpc.max_connection_age_ms={traffic.max_connection_age_seconds * 1000},"
        f"grpc.max_connection_age_grace_ms={traffic.max_connection_age_grace_seconds * 1000}"
    )


def make_plan(spec: ModelServerSpec) -> Plan:
    """Derive every effective setting. Raises SpecInvalid with field paths and fixes."""
    errors: list[SpecError] = []
    image, version = _image_and_version(spec, errors)
    memory = _memory_plan(spec, errors)
    cpu_request, cpu_limit = _cpu(spec)
    cores = max(1, math.ceil(cpu_limit))
    threads = spec.threads
    gpu = spec.gpu
    budget = _startup_budget(spec)
    probes = spec.probes or Probes()
    traffic = spec.traffic or Traffic()
    plan = Plan(
        spec=spec,
        image=image,
        serving_version=version,
        replicas=spec.replicas,
        memory=memory,
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        intra_op_threads=(threads and threads.intra_op) or cores,
        inter_op_threads=(threads and threads.inter_op) or (2 if cores >= 2 else 1),
        rest_threads=(threads and threads.rest) or max(4, 2 * cores),
        grpc_max_threads=(threads and threads.grpc_max) or max(8, 4 * cores),
        batch_threads=(spec.batching and spec.batching.num_batch_threads) or cores,
        startup_budget_seconds=budget,
        gpu_count=gpu.count if gpu else 0,
        gpu_memory_fraction=_gpu_fraction(spec),
        gpu_allow_growth=bool(gpu and gpu.allow_growth),
        prometheus=spec.monitoring is None or spec.monitoring.prometheus,
        version_poll_seconds=_version_poll(spec),
        load_retry_interval_seconds=max(1, min(LOAD_RETRY_MAX_SECONDS, budget // 10)),
        jemalloc=spec.allocator == "jemalloc",
        liveness_period_seconds=probes.liveness_period_seconds,
        readiness_period_seconds=probes.readiness_period_seconds,
        drain_seconds=traffic.drain_seconds,
        termination_grace_seconds=max(
            DEFAULT_TERMINATION_GRACE_SECONDS, traffic.drain_seconds + TERMINATION_MARGIN_SECONDS
        ),
        grpc_channel_arguments=_grpc_channel_arguments(traffic),
    )
    timeout = spec.promotion.timeout_seconds if spec.promotion else None
    plan = dataclasses.replace(
        plan,
        promotion_grace_seconds=(spec.promotion or Promotion()).grace_seconds,
        # By default a version may take as long to load as at start-up, plus the
        # polls that bring it to TF Serving's attention.
        promotion_timeout_seconds=timeout
        or budget + plan.config_poll_seconds + plan.version_poll_seconds,
    )
    if timeout is not None and timeout < plan.failure_report_seconds:
        errors.append(
            SpecError(
                "spec.promotion.timeoutSeconds",
                f"{timeout} is shorter than TF Serving needs to report a broken version "
                f"({plan.failure_report_seconds}s: the next config poll, the next listing "
                f"of the version directories every {plan.version_poll_seconds}s, and "
                f"{plan.load_retries + 1} load attempts {plan.load_retry_interval_seconds}s "
                "apart), so a failure would be rolled back as a time-out without its "
                f"error; use at least {plan.failure_report_seconds}",
            )
        )
    if plan.gpu_allow_growth and not plan.knows_flag("tensorflow_session_config_file"):
        errors.append(
            SpecError(
                "spec.gpu.allowGrowth",
                "needs TF Serving 2.8 or newer (--tensorflow_session_config_file)",
            )
        )
    if errors:
        raise SpecInvalid(errors)
    return plan


def transition_memory_error(
    spec: ModelServerSpec, plan: Plan, model: str, versions_side_by_side: int
) -> str | None:
    """Why the pods' limit cannot hold `model` with this many versions loaded at once
    (with every other model as declared), or None when it can or sizes are unknown."""
    sizes = [None if m.size is None else parse_bytes(m.size) for m in spec.models]
    counts = loaded_versions(spec)
    if any(s is None for s in sizes) or any(c is None for c in counts):
        return None
    held = 0
    moving_size = 0
    for entry, size, count in zip(spec.models, sizes, counts, strict=True):
        assert size is not None and count is not None
        if entry.name == model:
            moving_size = size
        held += size * (versions_side_by_side if entry.name == model else count)
    needed = SERVER_OVERHEAD_BYTES + math.ceil(REFUSE_FACTOR * held)
    if needed <= plan.memory.limit_bytes:
        return None
    return (
        f"Model {model}: {versions_side_by_side} versions of {human_bytes(moving_size)} side "
        f"by side (with the other models, {human_bytes(held)} loaded) need "
        f"{format_bytes(math.ceil(needed / MiB) * MiB)} at {REFUSE_FACTOR:g}x plus "
        f"{human_bytes(SERVER_OVERHEAD_BYTES)} for the server, more than the pods' limit "
        f"{format_bytes(plan.memory.limit_bytes)}; raise spec.resources.limits.memory or "
        "promote fewer versions at once"
    )
