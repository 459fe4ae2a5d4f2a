"""Reconcile one ModelServer: parse, plan, render, apply what differs, observe,
report. The edge between the pure core (model, plan, render, promotion, status)
and the API: kopf's handlers and the resync loop both call `reconcile`.

Owned objects are read from watch-fed indexes (no GET per resync), and nothing is
written when nothing changed: an idle fleet costs the API server no write at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException

from tfops import metrics, promotion, readiness
from tfops.clients import kube
from tfops.clients.tfserving import ServingUnreachable, get_model_status
from tfops.model import ModelServerSpec, parse_spec
from tfops.model_status import VersionStatus
from tfops.owned import BY_KIND, OWNED_KINDS, optional_objects, owned_object_names
from tfops.plan import Plan, make_plan, transition_memory_error
from tfops.promotion import Configured
from tfops.render import Owner, render_all
from tfops.render.configmap import MODELS_FILE, parse_models_config
from tfops.schema import SpecInvalid
from tfops.state import Backoff, OperatorState, Remembered
from tfops.status import (
    Failure,
    Observation,
    compute_status,
    new_oom_kills,
    pod_running,
    status_patch,
)
from tfops.timefmt import now_iso
from tfops.watched import Indexes, lookup, owned_pods, trim

REPLICAS_HANDOVER_MANAGER = "tfops-replicas-handover"
# Our own writes are trusted over the watch-fed indexes until the index shows a
# resourceVersion at least as new (under load the watches lag by many seconds, and
# judging from the stale copy would write everything again), and at most this long.
INDEX_LAG_SECONDS = 120.0
# A pod that answered this recently keeps its answer through a failed check
# (at least: see unanswered_grace).
UNANSWERED_GRACE_SECONDS = 30.0
# A pod that answered with every model AVAILABLE this recently is not asked again.
FRESH_ANSWER_SECONDS = 1.0
# A write whose resourceVersion we do not know is trusted only this long.
UNVERSIONED_TRUST_SECONDS = 5.0
# A ModelServer whose last reconcile failed waits this long before the next try
# (doubling per failure, up to the maximum); a new generation tries at once.
BACKOFF_FIRST_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0

# -- pure helpers -------------------------------------------------------------------


def first_difference(desired: Any, live: Any, path: str = "") -> str | None:
    """The first field we render whose live value differs, or None when the live
    object already has every one. Fields the apiserver defaulted or other
    managers own are not compared."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return path or "."
        for key, value in desired.items():
            where = f"{path}.{key}" if path else key
            if key not in live:
                return where
            found = first_difference(value, live[key], where)
            if found:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return path
        for index, (d, v) in enumerate(zip(desired, live, strict=True)):
            found = first_difference(d, v, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if desired == live else path


def _resource_version(obj: dict[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


def caught_up(indexed: Mapping[str, Any] | None, written: Remembered) -> bool:
    """Whether the index holds our write or something newer."""
    return (
        indexed is not None
        and written.resource_version > 0
        and _resource_version(dict(indexed)) >= written.resource_version
    )


def trusted(written: Remembered, now: float) -> bool:
    """Whether our write is still trusted over the index by its age alone."""
    limit = INDEX_LAG_SECONDS if written.resource_version else UNVERSIONED_TRUST_SECONDS
    return now - written.at <= limit


def live_object(
    indexed: dict[str, Any] | None, applied: Remembered | None, now: float
) -> dict[str, Any] | None:
    """The freshest copy of an owned object we know of: our own last write while
    the index lags behind it, else the index."""
    if applied is None or not trusted(applied, now) or caught_up(indexed, applied):
        return indexed
    return applied.body


def _remembered_write(
    memory: dict[Any, Remembered], key: Any, indexed: Mapping[str, Any] | None
) -> Remembered | None:
    """Our last write under `key`, forgotten once the index has caught up with it
    (so a later deletion is seen as one)."""
    remembered = memory.get(key)
    if remembered is not None and caught_up(indexed, remembered):
        memory.pop(key, None)
        return None
    return remembered


def _forget_stale_writes(state: OperatorState, now: float) -> None:
    """Drop what we remembered of writes the watches never showed us (the object
    went away first): the bound on what we trust over them. At most once a second:
    a walk over every fleet's memory on each reconcile grew with the square of the
    fleets."""
    if now - state.forgotten_at < 1.0:
        return
    state.forgotten_at = now
    for memory in (state.last_applied, state.written_status):
        for key, remembered in list(memory.items()):
            if not trusted(remembered, now):
                memory.pop(key, None)  # type: ignore[arg-type]


# -- the reconcile -------------------------------------------------------------------


def settled_answer(
    answer: tuple[dict[str, list[VersionStatus]], float] | None,
    spec: ModelServerSpec,
    now: float,
) -> dict[str, list[VersionStatus]] | None:
    """A pod's last answer when it is younger than FRESH_ANSWER_SECONDS and has
    every model of the spec AVAILABLE: asking again so soon could only find it
    worse, which the first pass after that second finds. While a fleet comes up
    its Deployment changes several times a second, and each pass asked every pod
    for every model again (23 asks per fleet at 300 fleets created)."""
    if answer is None or now - answer[1] >= FRESH_ANSWER_SECONDS:
        return None
    states = answer[0]
    for model in spec.models:
        versions = states.get(model.name)
        if not versions or any(v.state != "AVAILABLE" for v in versions):
            return None
    return states


def _model_states(
    state: OperatorState,
    spec: ModelServerSpec,
    pods: Iterable[dict[str, Any]],
    *,
    known: Mapping[str, tuple[dict[str, list[VersionStatus]], float]] | None = None,
    now: float = 0.0,
) -> dict[str, dict[str, list[VersionStatus]] | str]:
    """Each running pod's model states, or why its TF Serving did not answer. Every
    (pod, model) is asked at once, each within the time-out: a slow pod costs its
    slowest answer and a dead one one time-out, never one per pod or per model. A
    pod whose `known` answer is settled (settled_answer) is not asked again."""
    settings = state.config
    running = [pod for pod in pods if pod_running(pod)]
    reused = {
        pod["metadata"]["name"]: answer
        for pod in running
        if (answer := settled_answer((known or {}).get(pod["metadata"]["name"]), spec, now))
    }
    asks = [
        (pod, model.name)
        for pod in running
        if pod["metadata"]["name"] not in reused
        for model in spec.models
    ]

    def ask(pair: tuple[dict[str, Any], str]) -> list[VersionStatus] | str:
        pod, model = pair
        meta = pod["metadata"]
        base = settings.serving_url_template.format(
            pod_ip=pod.get("status", {}).get("podIP", ""),
            namespace=meta["namespace"],
            pod=meta["name"],
        )
        try:
            return get_model_status(base, model, settings.model_status_timeout_seconds)
        except ServingUnreachable as error:
            return str(error)

    # A reused answer is the known object itself: _steady_answers keeps its time.
    states: dict[str, dict[str, list[VersionStatus]] | str] = {
        pod["metadata"]["name"]: reused.get(pod["metadata"]["name"], {}) for pod in running
    }
    for (pod, model), answer in zip(asks, state.status_pool.map(ask, asks), strict=True):
        name = pod["metadata"]["name"]
        known = states[name]
        if isinstance(known, str):
            continue  # the pod already failed on another model: one error per pod
        if isinstance(answer, str):
            states[name] = answer
        else:
            known[model] = answer
    return states


def unanswered_grace(resync_seconds: float) -> float:
    """How long a pod's last answer outlives failed checks: three resync periods, 30 s
    at least. A settled fleet is re-read every period, or two when a cycle waits for
    a backlog, so one missed answer always falls within it; a fixed 30 s forgave
    nothing once the period was longer than 15 s."""
    return max(UNANSWERED_GRACE_SECONDS, 3 * resync_seconds)


def _steady_answers(
    state: OperatorState,
    owner: Owner,
    states: dict[str, dict[str, list[VersionStatus]] | str],
    now: float,
) -> dict[str, dict[str, list[VersionStatus]] | str]:
    """One missed answer is not an outage: a pod that answered within the grace
    (unanswered_grace) keeps that answer through a failed check (a pod that
    answers near the time-out would otherwise flap in and out of traffic and status).
    One that stays silent longer is reported; TF Serving's own probes still take a
    crashed pod out of traffic at once."""
    key = (owner.namespace, owner.name)
    known = state.answers.get(key, {})
    grace = unanswered_grace(state.config.resync_seconds)
    steady: dict[str, dict[str, list[VersionStatus]] | str] = {}
    kept: dict[str, tuple[dict[str, list[VersionStatus]], float]] = {}
    for pod, answer in states.items():
        if pod in known and answer is known[pod][0]:  # reused, not asked: as old as it was
            kept[pod] = known[pod]
            steady[pod] = answer
        elif isinstance(answer, dict):
            kept[pod] = (answer, now)
            steady[pod] = answer
        elif pod in known and now - known[pod][1] <= grace:
            kept[pod] = known[pod]
            steady[pod] = known[pod][0]
        else:
            steady[pod] = answer
    state.answers[key] = kept
    return steady


def _live_models_config(
    state: OperatorState, owner: Owner, indexes: Indexes
) -> dict[str, Configured]:
    """What the ConfigMap TF Serving polls serves now, by model."""
    configmap = BY_KIND["ConfigMap"]
    found = lookup(indexes, configmap.index, (owner.namespace, owner.name))
    remembered = state.last_applied.get(
        (owner.namespace, configmap.kind, configmap.name(owner.name))
    )
    live = live_object(found[0] if found else None, remembered, time.monotonic())
    text = ((live or {}).get("data") or {}).get(MODELS_FILE)
    return parse_models_config(text) if text else {}


def _version_change_pending(
    spec: ModelServerSpec, live: dict[str, Configured], previous: dict[str, Any]
) -> bool:
    """Whether a served model's versions or labels differ from what models.config
    says (a change to stage, or one rolled back and held), or a step is in flight."""
    if any(m.name in live and live[m.name] != Configured.of(m) for m in spec.models):
        return True
    return any(r["step"] in promotion.IN_FLIGHT for r in previous.get("promotions") or [])


def _promote(
    *,
    owner: Owner,
    spec: ModelServerSpec,
    plan: Plan,
    live: dict[str, Configured],
    pods: list[dict[str, Any]],
    model_states: dict[str, dict[str, list[VersionStatus]] | str] | None,
    previous: dict[str, Any],
    generation: int,
    sink: Sink,
) -> tuple[dict[str, Configured], list[dict[str, Any]]]:
    """Each served model's next transition step (tfops.promotion): what models.config
    should say now, and the records for status.promotions. Without model states
    (None: no change pending, or none can be seen) models.config follows the spec."""
    if model_states is None:
        names = {m.name for m in spec.models}
        return {}, [r for r in previous.get("promotions") or [] if r["model"] in names]
    answered = {p: s for p, s in model_states.items() if isinstance(s, dict)}
    # Every running pod must report a version before a label moves to it, ready or
    # not: a pod still starting with an older config would otherwise first read the
    # label's move, refuse it (the version is not loaded there) and, since a reload
    # is all or nothing, never load the version at all.
    running = sum(1 for p in pods if pod_running(p))
    records = {r["model"]: r for r in previous.get("promotions") or []}
    settings = promotion.Settings(
        grace_seconds=float(plan.promotion_grace_seconds),
        timeout_seconds=float(plan.promotion_timeout_seconds),
    )
    now = time.time()
    serving: dict[str, Configured] = {}
    kept: list[dict[str, Any]] = []
    for model in spec.models:
        current = live.get(model.name)
        desired = Configured.of(model)
        side_by_side = None
        if current is not None and current.versions is not None and desired.versions is not None:
            side_by_side = len(set(current.versions) | set(desired.versions))
        memory_error = None
        if side_by_side is not None:
            memory_error = transition_memory_error(spec, plan, model.name, side_by_side)
        result = promotion.step(
            model,
            current,
            promotion.Seen.of(model.name, answered, pods=running),
            records.get(model.name),
            now=now,
            generation=generation,
            settings=settings,
            memory_error=memory_error,
        )
        serving[model.name] = result.write
        if result.record is not None:
            kept.append(result.record)
        if result.event is not None:
            kind, reason, message = result.event
            sink.event(kind, reason, message)
            if reason in ("PromotionRolledBack", "PromotionRefused"):
                metrics.PROMOTION_FAILURES.labels(owner.namespace, owner.name, model.name).inc()
    return serving, kept


def _converge(
    state: OperatorState,
    writer: Writer,
    *,
    owner: Owner,
    spec: ModelServerSpec,
    plan: Plan,
    serving: dict[str, Configured],
    indexes: dict[str, Any],
    sink: Sink,
    logger: Any,
) -> dict[str, dict[str, Any] | None]:
    """Apply every rendered object that differs from the live one; delete the
    optional ones the spec turned off (the HPA, the headless Service). Returns the
    live objects by kind (the one of each kind every fleet has)."""
    now = time.monotonic()
    _forget_stale_writes(state, now)
    key = (owner.namespace, owner.name)
    indexed = {
        (owned.kind, body["metadata"]["name"]): body
        for owned in OWNED_KINDS
        for body in lookup(indexes, owned.index, key)
    }

    def live_copy(kind: str, name: str) -> dict[str, Any] | None:
        found = indexed.get((kind, name))
        remembered = _remembered_write(state.last_applied, (owner.namespace, kind, name), found)
        return live_object(found, remembered, now)

    rendered = render_all(owner, plan, serving)
    pending: list[tuple[dict[str, Any], dict[str, Any] | None, str | None]] = []
    for desired in rendered:
        current = live_copy(desired["kind"], desired["metadata"]["name"])
        if current is not None and current.get("metadata", {}).get("deletionTimestamp"):
            current = None
        difference = None if current is None else first_difference(desired, current)
        if current is None or difference is not None:
            pending.append((desired, current, difference))
    primary = owned_object_names(owner.name)
    live = {kind: live_copy(kind, name) for kind, name in primary.items()}

    deployment = live.get("Deployment")
    if (
        spec.autoscaling is not None
        and deployment is not None
        and live.get("HorizontalPodAutoscaler") is None
        and any(d["kind"] == "Deployment" for d, _, _ in pending)
    ):
        _hand_over_replicas(writer, owner, deployment)
    done: dict[str, list[str]] = {}
    try:
        for phase in apply_phases(pending, creating=deployment is None):
            # Within a phase the objects do not depend on each other: one round
            # trip for all of them.
            futures = [state.apply_pool.submit(_apply, writer, item[0]) for item in phase]
            failed: ApplyFailed | None = None
            for (desired, current, difference), future in zip(phase, futures, strict=True):
                try:
                    result = future.result()
                except ApplyFailed as error:
                    failed = failed or error
                    continue
                kind, name = desired["kind"], desired["metadata"]["name"]
                written = trim(result)
                if name == primary[kind]:
                    live[kind] = written
                state.last_applied[(owner.namespace, kind, name)] = Remembered(
                    time.monotonic(), written, _resource_version(written)
                )
                reason = "Created" if current is None else "Updated"
                metrics.APPLIES.labels(kind, reason.lower()).inc()
                done.setdefault(reason, []).append(
                    f"{kind} {name}" + ("" if current is None else f" ({difference} differed)")
                )
            if failed is not None:
                raise failed
    finally:
        # One Event per reconcile, not one per object: less noise in `kubectl
        # describe` and fewer writes.
        for reason, objects in done.items():
            message = f"{reason} {', '.join(objects)} in {owner.namespace}"
            logger.info(message)
            sink.event("Normal", reason, message)

    wanted = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    for kind, name in optional_objects(owner.name):
        if (kind, name) not in wanted and live_copy(kind, name) is not None:
            _delete_turned_off(state, writer, owner, kind=kind, name=name, sink=sink, logger=logger)
            if name == primary[kind]:
                live[kind] = None
    return live


def _hand_over_replicas(writer: Writer, owner: Owner, deployment: dict[str, Any]) -> None:
    """Hand spec.replicas to another field manager before the HPA takes over, or
    dropping it from our apply would reset the fleet to one pod first."""
    try:
        writer.hand_over(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": owner.name, "namespace": owner.namespace},
                "spec": {"replicas": deployment.get("spec", {}).get("replicas", 1)},
            },
            REPLICAS_HANDOVER_MANAGER,
        )
    except ApiException as error:
        raise ApplyFailed("Deployment", owner.name, error) from error


def _delete_turned_off(
    state: OperatorState,
    writer: Writer,
    owner: Owner,
    *,
    kind: str,
    name: str,
    sink: Sink,
    logger: Any,
) -> None:
    """An optional object the spec no longer asks for goes (the HPA when autoscaling
    is off: the Deployment keeps its replicas)."""
    try:
        deleted = writer.delete(kind, owner.namespace, name)
    except ApiException as error:
        raise ApplyFailed(kind, name, error) from error
    if deleted:
        message = f"Deleted {kind} {owner.namespace}/{name}: the spec turned it off"
        logger.info(message)
        sink.event("Normal", "Deleted", message)
    state.last_applied.pop((owner.namespace, kind, name), None)


class ApplyFailed(Exception):
    """The API server refused (or did not take) one owned object."""

    def __init__(self, kind: str, name: str, error: ApiException) -> None:
        super().__init__(f"{kind} {name}")
        self.kind, self.name, self.error = kind, name, error


def _apply(writer: Writer, obj: dict[str, Any]) -> dict[str, Any]:
    try:
        return writer.apply(obj)
    except ApiException as error:
        raise ApplyFailed(obj["kind"], obj["metadata"]["name"], error) from error


def apply_phases(
    pending: list[tuple[dict[str, Any], dict[str, Any] | None, str | None]], *, creating: bool
) -> list[list[tuple[dict[str, Any], dict[str, Any] | None, str | None]]]:
    """The order to apply what differs, in phases that run one after another:

    - a new fleet: the Deployment alone first, so nothing else is created when the
      API server refuses it (a half-created fleet);
    - a changed Deployment: the ConfigMap first, then the Deployment, so new pods
      never start with the files of the old revision (TF Serving reads the
      batching, monitoring and session files only at start);
    - otherwise everything at once."""
    deployment = [item for item in pending if item[0]["kind"] == "Deployment"]
    if not deployment:
        return [pending] if pending else []
    rest = [item for item in pending if item[0]["kind"] != "Deployment"]
    if creating:
        return [deployment, rest] if rest else [deployment]
    config = [item for item in rest if item[0]["kind"] == "ConfigMap"]
    others = [item for item in rest if item[0]["kind"] != "ConfigMap"]
    return [phase for phase in (config, deployment, others) if phase]


class Writer(Protocol):
    """Where a reconcile's object writes go (the API server; a fake in tests)."""

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def hand_over(self, obj: dict[str, Any], manager: str) -> None: ...

    def delete(self, kind: str, namespace: str, name: str) -> bool: ...

    def set_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> int:
        """Set one condition on a pod's status; returns its new resourceVersion."""
        ...


class Sink(Protocol):
    """Where a reconcile's Events and status changes go."""

    def event(self, kind: str, reason: str, message: str) -> None: ...

    def status(self, changes: dict[str, Any]) -> int:
        """Write status changes; returns the ModelServer's new resourceVersion (0
        when unknown: then the write is trusted over the index only briefly)."""
        ...


def describe_failure(error: BaseException) -> tuple[str, str, bool]:
    """(reason, message with the fix, whether tfops itself is at fault)."""
    if isinstance(error, ApplyFailed):
        api_error = error.error
        detail = kube.error_message(api_error)
        what = f"{error.kind} {error.name}"
        if api_error.status in (400, 422):
            fix = "fix the spec field behind it"
        elif api_error.status == 403:
            fix = (
                "grant the operator's ServiceAccount that permission, or ask why a policy "
                "refused it"
            )
        else:
            fix = "the API server was unavailable; tfops tries again"
        return (
            "ApplyFailed",
            f"The API server refused {what} (HTTP {api_error.status}): {detail}; {fix}.",
            False,
        )
    if isinstance(error, ApiException):
        return (
            "ApplyFailed",
            f"The API server answered HTTP {error.status}: {kube.error_message(error)}.",
            False,
        )
    if isinstance(error, OSError | urllib3.exceptions.HTTPError):
        return "ApplyFailed", f"The API server did not answer: {error}.", False
    return (
        "ReconcileFailed",
        f"tfops could not reconcile this ModelServer: {type(error).__name__}: {error}. "
        "This is a tfops bug: please report it with the operator's log.",
        True,
    )


def reconcile(
    state: OperatorState,
    body: Mapping[str, Any],
    sink: Sink,
    logger: Any,
    *,
    indexes: Indexes,
    trigger: str,
    writer: Writer | None = None,
) -> None:
    """Converge one ModelServer and report on it. Never raises: whatever goes wrong
    (a refused spec, a refused apply, a bug) ends in its status, with one Event and
    a bounded back-off before the next attempt."""
    meta = body["metadata"]
    owner = Owner(meta["name"], meta["namespace"], meta["uid"])
    key = (owner.namespace, owner.name)
    generation = int(meta.get("generation", 0))
    started = time.perf_counter()
    writer = writer or kube.Writer(state.api())
    with state.lock(key):
        previous = _previous_status(state, owner, body)
        backoff = state.backoffs.get(key)
        if (
            backoff is not None
            and backoff.generation == generation
            and time.monotonic() < backoff.retry_at
        ):
            metrics.RECONCILES.labels(trigger, "backoff").inc()
            return
        try:
            result = _reconcile(
                state,
                writer,
                owner,
                body,
                sink=sink,
                logger=logger,
                indexes=indexes,
                previous=previous,
                generation=generation,
            )
            state.backoffs.pop(key, None)
        except Exception as error:
            result = "failed"
            reason, message, ours = describe_failure(error)
            attempts = backoff.attempts + 1 if backoff and backoff.generation == generation else 1
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1))
            failure = Failure(reason, message, delay)
            state.backoffs[key] = Backoff(generation, attempts, time.monotonic() + delay)
            logger.warning(
                "Failed to reconcile %s/%s (attempt %d, next in %.0fs): %s",
                *key,
                attempts,
                delay,
                message,
                exc_info=ours,
            )
            status = compute_status(
                generation=generation,
                spec=None,
                plan=None,
                invalid=None,
                observation=Observation(),
                previous=previous,
                now=now_iso(),
                failure=failure,
            )
            try:
                _write_status(state, sink, previous, status, owner=owner, logger=logger)
            except (ApiException, OSError, urllib3.exceptions.HTTPError) as write_error:
                logger.warning("Could not report it in status either: %s", write_error)
    metrics.RECONCILES.labels(trigger, result).inc()
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)


def _config_not_applied(
    state: OperatorState,
    owner: Owner,
    *,
    spec: ModelServerSpec,
    plan: Plan,
    serving: dict[str, Configured],
    model_states: dict[str, dict[str, list[VersionStatus]] | str],
) -> tuple[dict[str, list[str]], float]:
    """Pods that still do not serve what models.config says once TF Serving has had
    the time to poll it, list the versions and load them; and how long it has said
    it. The clock starts when this process first sees the config (after an operator
    restart, later: never sooner)."""
    key = (owner.namespace, owner.name)
    now = time.monotonic()
    seen = frozenset(serving.items())
    known = state.configs_seen.get(key)
    if known is None or known[0] != seen:
        state.configs_seen[key] = (seen, now)
        return {}, 0.0
    age = now - known[1]
    budget = plan.config_poll_seconds + plan.version_poll_seconds + plan.startup_budget_seconds
    if age < budget:
        return {}, age
    lagging = {}
    for pod, answer in model_states.items():
        if isinstance(answer, dict):
            differences = readiness.config_differences(spec, answer, serving)
            if differences:
                lagging[pod] = differences
    return lagging, age


def _set_readiness_gates(
    state: OperatorState,
    writer: Writer,
    *,
    spec: ModelServerSpec,
    pods: list[dict[str, Any]],
    model_states: dict[str, dict[str, list[VersionStatus]] | str] | None,
    serving: dict[str, Configured],
    logger: Any,
) -> None:
    """Each running pod's readiness gate, from its model states (None: not checked,
    the gate opens once TF Serving is up). Written only when it changes; a pod that
    went away meanwhile is skipped."""
    now = time.monotonic()
    for pod in pods:
        meta = pod["metadata"]
        gates = (pod.get("spec") or {}).get("readinessGates") or []
        if not pod_running(pod) or not any(
            g.get("conditionType") == readiness.CONDITION for g in gates
        ):
            continue  # not started, or from a template before the gate existed
        if model_states is None:
            gate = readiness.UNCHECKED
        elif meta["name"] in model_states:
            gate = readiness.gate_for_pod(spec, model_states[meta["name"]], serving)
        else:
            continue
        key = (meta["namespace"], "Pod", meta["name"])
        written = _remembered_write(state.last_applied, key, pod)
        seen = written.body if written is not None and trusted(written, now) else pod
        condition = readiness.gate_change(seen, gate, now_iso())
        if condition is None:
            continue
        try:
            version = writer.set_pod_condition(meta["namespace"], meta["name"], condition)
        except ApiException as error:
            if error.status != 404:
                logger.warning(
                    "Could not set the readiness gate of pod %s: %s",
                    meta["name"],
                    kube.error_message(error),
                )
            continue
        state.last_applied[key] = Remembered(
            time.monotonic(), {"status": {"conditions": [condition]}}, version
        )


def spec_and_plan(state: OperatorState, body: Mapping[str, Any]) -> tuple[ModelServerSpec, Plan]:
    """The ModelServer's parsed spec and plan, parsed once per generation. Raises
    SpecInvalid (never remembered: the next generation may fix it)."""
    meta = body.get("metadata") or {}
    key = (meta.get("namespace", ""), meta.get("name", ""))
    stamp = (str(meta.get("uid", "")), int(meta.get("generation") or 0))
    known = state.plans.get(key)
    if known is not None and known[0] == stamp and stamp[1]:
        return known[1], known[2]
    spec = parse_spec(body.get("spec"))
    plan = make_plan(spec)
    if stamp[1]:
        state.plans[key] = (stamp, spec, plan)
    return spec, plan


def _reconcile(
    state: OperatorState,
    writer: Writer,
    owner: Owner,
    body: Mapping[str, Any],
    *,
    sink: Sink,
    logger: Any,
    indexes: Indexes,
    previous: dict[str, Any],
    generation: int,
) -> str:
    try:
        spec, plan = spec_and_plan(state, body)
    except SpecInvalid as invalid:
        status = compute_status(
            generation=generation,
            spec=None,
            plan=None,
            invalid=invalid,
            observation=Observation(),
            previous=previous,
            now=now_iso(),
        )
        _write_status(state, sink, previous, status, owner=owner, logger=logger)
        return "invalid"
    pods = owned_pods(indexes, owner.namespace, owner.name)
    checked = bool(state.config.serving_url_template)
    # TF Serving is asked before applying only when a version change needs the
    # answers to pick its step; otherwise after, so an apply never waits on it.
    live_config = _live_models_config(state, owner, indexes)
    staging = checked and _version_change_pending(spec, live_config, previous)
    model_states = _model_states(state, spec, pods) if staging else None
    serving, promotions = _promote(
        owner=owner,
        spec=spec,
        plan=plan,
        live=live_config,
        pods=pods,
        model_states=model_states,
        previous=previous,
        generation=generation,
        sink=sink,
    )
    live = _converge(
        state,
        writer,
        owner=owner,
        spec=spec,
        plan=plan,
        serving=serving,
        indexes=indexes,
        sink=sink,
        logger=logger,
    )
    if model_states is None and checked:
        # Not staging a version change (that asks afresh, above): a pod found with
        # everything AVAILABLE a moment ago is not asked again.
        model_states = _model_states(
            state,
            spec,
            pods,
            known=state.answers.get((owner.namespace, owner.name)),
            now=time.monotonic(),
        )
    model_states = _steady_answers(state, owner, model_states or {}, time.monotonic())
    _set_readiness_gates(
        state,
        writer,
        spec=spec,
        pods=pods,
        model_states=model_states if checked else None,
        serving=serving,
        logger=logger,
    )
    lagging, config_age = _config_not_applied(
        state, owner, spec=spec, plan=plan, serving=serving, model_states=model_states
    )
    if lagging:
        state.config_lagging[(owner.namespace, owner.name)] = lagging
    else:
        state.config_lagging.pop((owner.namespace, owner.name), None)
    state.loading[(owner.namespace, owner.name)] = readiness.loading_pods(
        spec,
        model_states,
        serving,
        promoting=any(r.get("step") in promotion.IN_FLIGHT for r in promotions),
        lagging=lagging,
    )
    fleet = state.fleets.get((owner.namespace, owner.name))
    observation = Observation(
        deployment=live.get("Deployment"),
        pods=pods,
        model_states=model_states,
        models_checked=checked,
        serving=serving,
        promotions=promotions,
        leaks=fleet.leaks() if fleet else {},
        guard_restarts=list(fleet.restarts) if fleet else [],
        guard_restarts_total=fleet.restarts_total if fleet else 0,
        guard_blind_spot=fleet.blind_spot() if fleet else "",
        config_not_applied=lagging,
        config_age_seconds=config_age,
    )
    for kill in new_oom_kills(pods, previous):
        metrics.OOM_KILLS.labels(owner.namespace, owner.name).inc()
        message = (
            f"Container of pod {owner.namespace}/{kill.pod} was OOM-killed at {kill.finished_at}"
        )
        logger.warning(message)
        sink.event("Warning", "OOMKilled", message)
    status = compute_status(
        generation=generation,
        spec=spec,
        plan=plan,
        invalid=None,
        observation=observation,
        previous=previous,
        now=now_iso(),
    )
    _write_status(state, sink, previous, status, owner=owner, logger=logger)
    return "ok"


def _previous_status(state: OperatorState, owner: Owner, body: Mapping[str, Any]) -> dict[str, Any]:
    # The body can predate our own last status write by a moment (watch lag);
    # judging from it would count an OOM kill twice or write the same again.
    written = _remembered_write(state.written_status, (owner.namespace, owner.name), body)
    if written is not None and trusted(written, time.monotonic()):
        return dict(written.body)
    return dict(body.get("status") or {})


def _write_status(
    state: OperatorState,
    sink: Sink,
    previous: dict[str, Any],
    status: dict[str, Any],
    *,
    owner: Owner,
    logger: Any,
) -> None:
    changes = status_patch(previous, status)
    if not changes:
        return
    written_version = sink.status(changes)
    merged = {k: v for k, v in {**previous, **changes}.items() if v is not None}
    state.written_status[(owner.namespace, owner.name)] = Remembered(
        time.monotonic(), merged, written_version
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    before = next((c for c in previous.get("conditions") or [] if c["type"] == "Ready"), None)
    metrics.READY.labels(owner.namespace, owner.name).set(ready["status"] == "True")
    if before and (before["reason"], before["message"]) == (ready["reason"], ready["message"]):
        return
    if ready["reason"] == "InvalidSpec":
        metrics.INVALID_SPECS.inc()
        logger.warning(ready["message"])
        sink.event("Warning", "InvalidSpec", ready["message"])
    elif ready["reason"] in ("ApplyFailed", "ReconcileFailed"):
        sink.event("Warning", ready["reason"], ready["message"])
    elif ready["status"] == "True" and (before is None or before["status"] != "True"):
        sink.event("Normal", "Ready", ready["message"])


def refresh_status(state: OperatorState, body: dict[str, Any], indexes: Indexes) -> None:
    """Reconcile now, outside kopf (e.g. right after the memory guard acted)."""
    reconcile(
        state,
        body,
        kube.ApiSink(state.api(), body, state.events),
        logging.getLogger("tfops.status"),
        indexes=indexes,
        trigger="guard",
    )
