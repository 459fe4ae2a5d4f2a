"""Status from observations: pure. The handler gathers, this decides, the handler writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfops.conditions import Condition, merge_conditions
from tfops.memory.detector import Verdict
from tfops.memory.watch import describe_leak
from tfops.model import MemoryGuard, ModelServerSpec, ModelSpec
from tfops.model_status import VersionStatus
from tfops.plan import Plan
from tfops.promotion import IN_FLIGHT, REFUSED, ROLLED_BACK, Configured
from tfops.quantity import format_bytes, format_cpu
from tfops.render.common import CONTAINER_NAME
from tfops.schema import SpecInvalid
from tfops.status_model import OWNED_KEYS
from tfops.timefmt import epoch

# How many counted OOM kills we remember, to count each one once.
OOM_MEMORY = 20
# An OOM kill keeps the fleet Degraded this long.
OOM_DEGRADED_SECONDS = 900


def _seconds_between(earlier: str, later: str) -> float:
    try:
        return epoch(later) - epoch(earlier)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Observation:
    """What the handler saw of the fleet."""

    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    # pod name -> model name -> versions, or the error text when the pod's REST
    # API did not answer. Empty when model states are not checked.
    model_states: dict[str, dict[str, list[VersionStatus]] | str] = field(default_factory=dict)
    models_checked: bool = True
    # The memory guard's view: leaking pods' verdicts and its restarts so far.
    leaks: dict[str, Verdict] = field(default_factory=dict)
    guard_restarts: list[dict[str, Any]] = field(default_factory=list)
    guard_restarts_total: int = 0
    # What the guard cannot see (memory source down, pods without a limit), if any.
    guard_blind_spot: str = ""
    # Version transitions (tfops.promotion): what each model's models.config entry
    # serves now, and the transitions' records (status.promotions).
    serving: dict[str, Configured] = field(default_factory=dict)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    # Pods still not serving what models.config has said for longer than the polls
    # and a load take (tfops.readiness.config_differences): pod -> what differs.
    config_not_applied: dict[str, list[str]] = field(default_factory=dict)
    config_age_seconds: float = 0.0


@dataclass(frozen=True)
class OomKill:
    pod: str
    finished_at: str

    @property
    def key(self) -> str:
        return f"{self.pod}/{self.finished_at}"


def pod_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_serving(pod: dict[str, Any]) -> bool:
    """TF Serving's own probes pass (ContainersReady): it is up, whatever the
    readiness gate says of its models. Ready also waits for that gate, which the
    operator sets from the very model states judged here."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    by_type = {c.get("type"): c.get("status") for c in conditions}
    return by_type.get("ContainersReady", by_type.get("Ready")) == "True"


def pod_running(pod: dict[str, Any]) -> bool:
    """Scheduled, started and not going away: a pod whose TF Serving is (or will
    shortly be) serving whatever models.config says."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return pod.get("status", {}).get("phase") == "Running"


def oom_kills(pods: list[dict[str, Any]]) -> list[OomKill]:
    """Every OOM kill the pods' container statuses still show."""
    kills = []
    for pod in pods:
        name = pod["metadata"]["name"]
        for container in pod.get("status", {}).get("containerStatuses") or []:
            if container.get("name") != CONTAINER_NAME:
                continue
            for state in (container.get("lastState") or {}, container.get("state") or {}):
                terminated = state.get("terminated") or {}
                if terminated.get("reason") == "OOMKilled":
                    kills.append(OomKill(name, str(terminated.get("finishedAt", ""))))
    return sorted(set(kills), key=lambda k: (k.finished_at, k.pod))


def new_oom_kills(pods: list[dict[str, Any]], previous: dict[str, Any]) -> list[OomKill]:
    seen = set((previous.get("oomKills") or {}).get("seen") or [])
    return [kill for kill in oom_kills(pods) if kill.key not in seen]


def _oom_status(pods: list[dict[str, Any]], previous: dict[str, Any]) -> dict[str, Any] | None:
    before = previous.get("oomKills") or {}
    fresh = new_oom_kills(pods, previous)
    if not fresh:
        return before or None
    last = fresh[-1]
    seen = [*(before.get("seen") or []), *(k.key for k in fresh)][-OOM_MEMORY:]
    return {
        "total": int(before.get("total", 0)) + len(fresh),
        "lastPod": last.pod,
        "lastTime": last.finished_at,
        "seen": seen,
    }


def effective_settings(plan: Plan) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "image": plan.image,
        "memoryRequest": format_bytes(plan.memory.request_bytes),
        "memoryLimit": format_bytes(plan.memory.limit_bytes),
        "memoryBasis": plan.memory.basis,
        "cpuRequest": format_cpu(plan.cpu_request),
        "cpuLimit": format_cpu(plan.cpu_limit),
        "intraOpThreads": plan.intra_op_threads,
        "interOpThreads": plan.inter_op_threads,
        "restThreads": plan.rest_threads,
        "grpcMaxThreads": plan.grpc_max_threads,
        "batchThreads": plan.batch_threads,
        "startupBudgetSeconds": plan.startup_budget_seconds,
        "versionPollSeconds": plan.version_poll_seconds,
        "loadRetries": plan.load_retries,
        "loadRetryIntervalSeconds": plan.load_retry_interval_seconds,
        "failureReportSeconds": plan.failure_report_seconds,
        "promotionTimeoutSeconds": plan.promotion_timeout_seconds,
    }
    if plan.gpu_memory_fraction is not None:
        settings["gpuMemoryFraction"] = plan.gpu_memory_fraction
    return settings


@dataclass(frozen=True)
class ModelVerdict:
    """How one model stands on one pod."""

    available: bool
    loading: bool
    failures: list[VersionStatus]


def judge_model(
    model: ModelSpec, versions: list[VersionStatus], serving: Configured | None = None
) -> ModelVerdict:
    """`serving`: the versions models.config names now, when a transition (or its
    rollback) differs from the spec. TF Serving keeps a failed version in END for
    the life of the process, so what counts as a failure: under specific, a failed
    version still configured; under latest/all, a failed version with no newer
    version AVAILABLE (an older failure is history once a newer version serves)."""
    configured = (serving or Configured.of(model)).versions
    newest = max((v.version for v in versions if v.state == "AVAILABLE"), default=None)
    failures = [
        v
        for v in versions
        if v.failed
        and (
            v.version in configured
            if configured is not None
            else newest is None or v.version > newest
        )
    ]
    available = {v.version for v in versions if v.state == "AVAILABLE"}
    loading = any(v.state in ("START", "LOADING") for v in versions)
    # latest N / all: TF Serving decides which numbers; it must serve something
    # and be done loading.
    ok = set(configured) <= available if configured is not None else bool(available) and not loading
    return ModelVerdict(
        available=ok and not failures, loading=loading or not versions, failures=failures
    )


def _model_status(
    spec: ModelServerSpec,
    states: dict[str, dict[str, list[VersionStatus]]],
    observation: Observation,
) -> list[dict[str, Any]]:
    result = []
    steps = {p["model"]: p["step"] for p in observation.promotions}
    for model in spec.models:
        serving = observation.serving.get(model.name) or Configured.of(model)
        by_version: dict[int, list[VersionStatus]] = {}
        for pod_states in states.values():
            for version in pod_states.get(model.name, []):
                by_version.setdefault(version.version, []).append(version)
        versions = []
        for number, seen in sorted(by_version.items()):
            kinds = {v.state for v in seen}
            entry: dict[str, Any] = {
                "version": number,
                "state": kinds.pop() if len(kinds) == 1 and len(seen) == len(states) else "Mixed",
                "availablePods": sum(v.state == "AVAILABLE" for v in seen),
            }
            errors = sorted({v.error_message for v in seen if v.failed})
            if errors:
                entry["error"] = "; ".join(errors)
            versions.append(entry)
        item: dict[str, Any] = {"name": model.name, "versions": versions}
        if serving.labels:
            item["labels"] = dict(serving.labels)
        if model.name in steps:
            item["promotion"] = steps[model.name]
        result.append(item)
    return result


@dataclass
class _Findings:
    """What the pure checks found, before it becomes conditions."""

    ready_reason: str = "AllModelsAvailable"
    ready_message: str = ""
    progressing: list[str] = field(default_factory=list)
    degraded: list[tuple[str, str]] = field(default_factory=list)

    def not_ready(self, reason: str, message: str) -> None:
        # The first reason found stays: it is the one to act on first.
        if self.ready_reason == "AllModelsAvailable":
            self.ready_reason, self.ready_message = reason, message


@dataclass(frozen=True)
class Failure:
    """Why this generation could not be applied: the API server refused an object
    (ApplyFailed) or tfops itself failed (ReconcileFailed), and when it tries again."""

    reason: str
    message: str
    retry_seconds: float


def _refused_status(
    *,
    reason: str,
    message: str,
    progressing: str,
    generation: int,
    previous: dict[str, Any],
    now: str,
) -> dict[str, Any]:
    conditions = [
        Condition("Ready", False, reason, message),
        Condition("Progressing", False, reason, progressing),
        Condition("Degraded", False, reason, "The running fleet was not changed."),
    ]
    # Keep what we last knew of the running fleet.
    status = {key: previous[key] for key in OWNED_KEYS if key in previous}
    status["observedGeneration"] = generation
    status["conditions"] = merge_conditions(previous.get("conditions"), conditions, generation, now)
    return status


def rollout_view(deployment: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the status reads of a Deployment (_check_rollout, _check_traffic,
    the replica counts): a change outside it changes nothing tfops reports."""
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    dep_status = deployment.get("status") or {}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        spec.get("replicas"),
        *(
            dep_status.get(key)
            for key in ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas")
        ),
        tuple(
            sorted(
                str(c.get("message"))
                for c in dep_status.get("conditions") or []
                if c.get("reason") == "ProgressDeadlineExceeded"
            )
        ),
    )


def _check_rollout(
    deployment: dict[str, Any] | None, desired: int, ready_pods: int, findings: _Findings
) -> None:
    if deployment is None:
        findings.progressing.append("creating the Deployment")
        findings.not_ready("Creating", "The Deployment is being created.")
        return
    dep_status = deployment.get("status", {})
    rolled_out = (
        dep_status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and dep_status.get("updatedReplicas", 0) == desired
        and dep_status.get("replicas", 0) == desired
    )
    if not rolled_out:
        findings.progressing.append(
            f"rolling out: {dep_status.get('updatedReplicas', 0)} of {desired} pods updated"
        )
    for cond in dep_status.get("conditions") or []:
        if cond.get("reason") == "ProgressDeadlineExceeded":
            findings.degraded.append(
                ("RolloutStuck", f"The rollout is stuck: {cond.get('message')}")
            )
    # Pods whose TF Serving is up: one its readiness gate holds back (a model still
    # loading) is judged by the model checks, which say why.
    if desired == 0:
        findings.not_ready("ScaledToZero", "replicas is 0.")
    elif ready_pods < desired:
        findings.not_ready("PodsNotReady", f"{ready_pods} of {desired} pods are ready.")


def _check_traffic(dep_status: dict[str, Any], desired: int, findings: _Findings) -> None:
    """Ready also means serving: every desired pod counted Ready by the kubelet,
    readiness gate included (the gate opens a moment after tfops judged the pod)."""
    ready = int(dep_status.get("readyReplicas", 0))
    if desired and ready < desired:
        findings.not_ready(
            "PodsNotReady",
            f"{ready} of {desired} pods take traffic; the others wait for their readiness "
            "gate (serving.tfops.dev/models-ready).",
        )


def _check_models(
    spec: ModelServerSpec, observation: Observation, ready_names: set[str], findings: _Findings
) -> tuple[list[dict[str, Any]], int]:
    """Judge every model on every ready pod; returns (status.models, models available)."""
    reachable = {
        pod: states
        for pod, states in observation.model_states.items()
        if isinstance(states, dict) and pod in ready_names
    }
    unreachable = sorted(
        (pod, error)
        for pod, error in observation.model_states.items()
        if isinstance(error, str) and pod in ready_names
    )
    available, loading, missing = 0, [], []
    for model in spec.models:
        serving = observation.serving.get(model.name)
        verdicts = [
            judge_model(model, states.get(model.name, []), serving) for states in reachable.values()
        ]
        failures = [f for v in verdicts for f in v.failures]
        if failures:
            versions = ", ".join(sorted({str(f.version) for f in failures}))
            errors = "; ".join(sorted({f.error_message or f.error_code for f in failures}))
            findings.degraded.append(
                (
                    "ModelLoadFailed",
                    f"Model {model.name} version {versions} failed to load: {errors}. TF "
                    "Serving does not load it again while the pod runs: fix the version's "
                    "files and restart the pods, or stop serving that version.",
                )
            )
        if verdicts and all(v.available for v in verdicts):
            available += 1
        else:
            missing.append(model.name)
            if any(v.loading for v in verdicts):
                loading.append(model.name)
    if loading:
        findings.progressing.append(f"loading {', '.join(loading)}")
    if unreachable:
        pod, error = unreachable[0]
        findings.not_ready(
            "ModelStatusUnknown",
            f"TF Serving's REST API on pod {pod} did not answer: {error}. It opens its "
            "ports only once every configured model has loaded, and exits when one fails.",
        )
    elif missing:
        findings.not_ready(
            "ModelsNotAvailable",
            f"Not every configured version is AVAILABLE yet: {', '.join(missing)}.",
        )
    models = _model_status(spec, reachable, observation)
    if findings.ready_reason == "AllModelsAvailable":
        versions = sum(len(m["versions"]) for m in models)
        findings.ready_message = (
            f"{len(spec.models)} model(s), {versions} version(s) "
            f"AVAILABLE on {len(ready_names)} ready pod(s)."
        )
    return models, available


def _check_config_applied(observation: Observation, findings: _Findings) -> None:
    if not observation.config_not_applied:
        return
    pod, differences = sorted(observation.config_not_applied.items())[0]
    others = len(observation.config_not_applied) - 1
    findings.degraded.append(
        (
            "ConfigNotApplied",
            f"Pod {pod}{f' (and {others} more)' if others else ''} does not serve what "
            f"models.config has said for {observation.config_age_seconds:.0f}s: "
            f"{'; '.join(differences)}. Check the model's basePath; if it is right, TF "
            "Serving's config polling may have wedged (it can ignore later fixes): "
            "delete the pod to have it read models.config afresh.",
        )
    )


def _check_promotions(
    promotions: list[dict[str, Any]], generation: int, findings: _Findings
) -> None:
    for record in promotions:
        if record["step"] in IN_FLIGHT:
            to = Configured.from_json(record["to"]).describe()
            findings.progressing.append(f"promoting {record['model']} to {to} ({record['step']})")
            findings.not_ready(
                "Promoting",
                f"Model {record['model']} is moving to {to}: step {record['step']}.",
            )
        elif record["step"] in (ROLLED_BACK, REFUSED) and int(record["generation"]) == generation:
            findings.degraded.append(("PromotionFailed", record["message"]))
            findings.not_ready("PromotionFailed", record["message"])


def _check_oom(pods: list[dict[str, Any]], plan: Plan, now: str, findings: _Findings) -> None:
    recent = [
        k for k in oom_kills(pods) if _seconds_between(k.finished_at, now) <= OOM_DEGRADED_SECONDS
    ]
    if recent:
        last = recent[-1]
        findings.degraded.append(
            (
                "OOMKilled",
                f"Pod {last.pod} was OOM-killed at {last.finished_at} (limit "
                f"{format_bytes(plan.memory.limit_bytes)}): raise resources.limits.memory or "
                "declare model sizes so tfops plans memory.",
            )
        )


def serving_exits(pods: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(pod, terminated state) of serving containers whose last run ended in an error
    other than an OOM kill: TF Serving exits when its initial config cannot load."""
    exits = []
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses") or []:
            if container.get("name") != CONTAINER_NAME:
                continue
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            if terminated.get("exitCode", 0) != 0 and terminated.get("reason") != "OOMKilled":
                exits.append((pod["metadata"]["name"], terminated))
    return exits


def _check_exits(pods: list[dict[str, Any]], now: str, findings: _Findings) -> None:
    recent = [
        (pod, state)
        for pod, state in serving_exits(pods)
        if _seconds_between(str(state.get("finishedAt", "")), now) <= OOM_DEGRADED_SECONDS
    ]
    if recent:
        pod, state = recent[-1]
        log = " ".join(str(state.get("message") or "").split())[-600:]
        findings.degraded.append(
            (
                "ServingExited",
                f"TF Serving on pod {pod} exited with code {state.get('exitCode')} at "
                f"{state.get('finishedAt')}" + (f": {log}" if log else " (see its log)") + ".",
            )
        )


def _leak_condition(spec: ModelServerSpec, observation: Observation, alive: set[str]) -> Condition:
    guard = spec.memory_guard or MemoryGuard()
    if not guard.enabled:
        return Condition(
            "MemoryLeakSuspected",
            False,
            "Disabled",
            "The memory guard is off (spec.memoryGuard.enabled).",
        )
    leaking = sorted((pod, v) for pod, v in observation.leaks.items() if pod in alive)
    if not leaking and observation.guard_blind_spot:
        return Condition(
            "MemoryLeakSuspected",
            None,
            "NotWatched",
            f"The memory guard cannot tell: {observation.guard_blind_spot}.",
        )
    if not leaking:
        return Condition(
            "MemoryLeakSuspected",
            False,
            "NoLeak",
            "No serving pod's memory floor is rising toward its limit.",
        )
    action = (
        "tfops restarts a leaking pod before its OOM."
        if guard.mode == "Restart"
        else "mode is Alert: tfops does not restart it."
    )
    return Condition(
        "MemoryLeakSuspected",
        True,
        "LeakDetected",
        "; ".join(describe_leak(pod, v) for pod, v in leaking) + ". " + action,
    )


def _conditions(findings: _Findings) -> list[Condition]:
    healthy_reasons = ("AllModelsAvailable", "PodsReady")
    failed_load = any(reason == "ModelLoadFailed" for reason, _ in findings.degraded)
    is_ready = findings.ready_reason in healthy_reasons and not failed_load
    reason, message = findings.ready_reason, findings.ready_message
    if not is_ready and reason in healthy_reasons:
        reason, message = findings.degraded[0]
    progressing = findings.progressing
    degraded = findings.degraded
    return [
        Condition("Ready", is_ready, reason, message),
        Condition("Progressing", True, "Progressing", "; ".join(progressing).capitalize() + ".")
        if progressing
        else Condition("Progressing", False, "Stable", "The fleet matches the spec."),
        Condition("Degraded", True, degraded[0][0], " ".join(m for _, m in degraded))
        if degraded
        else Condition(
            "Degraded", False, "Healthy", "No failed loads, stuck rollouts or OOM kills."
        ),
    ]


def compute_status(
    *,
    generation: int,
    spec: ModelServerSpec | None,
    plan: Plan | None,
    invalid: SpecInvalid | None,
    observation: Observation,
    previous: dict[str, Any],
    now: str,
    failure: Failure | None = None,
) -> dict[str, Any]:
    """The whole status the operator owns. Equal inputs give an equal status, so an
    unchanged fleet produces no write."""
    if failure is not None:
        return _refused_status(
            reason=failure.reason,
            message=failure.message,
            progressing=f"tfops tries again in {failure.retry_seconds:.0f}s, and at once "
            "when the spec changes.",
            generation=generation,
            previous=previous,
            now=now,
        )
    if invalid is not None or spec is None or plan is None:
        message = "; ".join(str(e) for e in invalid.errors) if invalid else "invalid spec"
        return _refused_status(
            reason="InvalidSpec",
            message=f"The spec was refused and the running fleet left as it was: {message}",
            progressing="Fix the spec to continue.",
            generation=generation,
            previous=previous,
            now=now,
        )

    deployment = observation.deployment
    ready_names = {p["metadata"]["name"] for p in observation.pods if pod_serving(p)}
    desired = int((deployment or {}).get("spec", {}).get("replicas", plan.replicas))
    dep_status = (deployment or {}).get("status", {})
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": int(dep_status.get("replicas", 0)),
        "readyReplicas": int(dep_status.get("readyReplicas", 0)),
        "replicasSummary": f"{int(dep_status.get('readyReplicas', 0))}/{desired}",
        "effective": effective_settings(plan),
    }
    findings = _Findings()
    _check_rollout(deployment, desired, len(ready_names), findings)
    if observation.models_checked:
        status["models"], available = _check_models(spec, observation, ready_names, findings)
        status["modelsSummary"] = f"{available}/{len(spec.models)}"
        _check_traffic(dep_status, desired, findings)
    else:
        status["modelsSummary"] = "unchecked"
        _check_traffic(dep_status, desired, findings)
        findings.not_ready(
            "PodsReady",
            f"{len(ready_names)} pod(s) ready; model states are "
            "not checked (the operator runs without a serving URL template).",
        )
    oom = _oom_status(observation.pods, previous)
    if oom:
        status["oomKills"] = oom
    _check_oom(observation.pods, plan, now, findings)
    _check_exits(observation.pods, now, findings)
    _check_promotions(observation.promotions, generation, findings)
    _check_config_applied(observation, findings)
    if observation.promotions:
        status["promotions"] = observation.promotions
    status["memoryGuard"] = {
        "restarts": observation.guard_restarts,
        "restartsTotal": observation.guard_restarts_total,
    }
    alive = {p["metadata"]["name"] for p in observation.pods}
    conditions = [*_conditions(findings), _leak_condition(spec, observation, alive)]
    status["conditions"] = merge_conditions(previous.get("conditions"), conditions, generation, now)
    return status


def status_patch(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The merge patch turning `previous` into `current` for the keys we own; empty
    when nothing changed, so an unchanged fleet costs no write."""
    patch: dict[str, Any] = {
        key: value for key, value in current.items() if previous.get(key) != value
    }
    for key in OWNED_KEYS:
        if key in previous and key not in current:
            patch[key] = None
    return patch
