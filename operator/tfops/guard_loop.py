"""The memory guard's loop: sample every serving pod's working set, judge it, and
restart leaking pods on our schedule (the edge around tfops.memory)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from tfops import metrics, reconcile, watched
from tfops.clients import kube
from tfops.clients.memory_sources import (
    MetricsServerSource,
    PrometheusSource,
    Reading,
    Source,
    SourceError,
)
from tfops.memory.detector import History, Verdict
from tfops.memory.policy import LeakTracker, restart_decision
from tfops.memory.watch import (
    Filling,
    FleetWatch,
    PodWatch,
    checkpoint_config_map,
    checkpoint_name,
    describe_leak,
    leak_record,
    restore_pod,
    settings_for,
)
from tfops.model import MemoryGuard, Traffic
from tfops.quantity import parse_bytes
from tfops.render.common import CONTAINER_NAME, Owner
from tfops.schema import SpecInvalid
from tfops.state import OperatorState
from tfops.status import pod_ready, pod_serving
from tfops.timefmt import epoch, now_iso

TICK_SECONDS = 5.0
# A leak restart is in flight (counted against --max-leak-restarts-in-flight) until
# its fleet is ready again: at least this long (the index may still show the
# Deployment from before), at most the longer (a fleet that never recovers).
MIN_IN_FLIGHT_SECONDS = 30.0
IN_FLIGHT_MAX_SECONDS = 1800.0
# A watch is filled from the source's past (Prometheus) at most this far back: the
# windows a verdict needs soonest; the longer ones fill as the pod is watched. At
# 15 s, 480 points per pod instead of up to 10,000 replayed in the guard's round.
BACKFILL_SECONDS = 7200.0
logger = logging.getLogger("tfops.memory")


def _limit(pod: dict[str, Any]) -> float | None:
    for container in pod.get("spec", {}).get("containers") or []:
        if container.get("name") == CONTAINER_NAME:
            memory = (container.get("resources") or {}).get("limits", {}).get("memory")
            return float(parse_bytes(memory)) if memory else None
    return None


def _container_state(pod: dict[str, Any]) -> tuple[int, bool, float | None]:
    """(restart count, whether the last restart was an OOM kill, epoch seconds the
    running process started) of the serving container."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER_NAME:
            continue
        terminated = (status.get("lastState") or {}).get("terminated") or {}
        running = (status.get("state") or {}).get("running") or {}
        started = running.get("startedAt") or (pod.get("status") or {}).get("startTime")
        return (
            int(status.get("restartCount", 0)),
            terminated.get("reason") == "OOMKilled",
            epoch(started) if started else None,
        )
    return 0, False, None


def rollout_complete(deployment: dict[str, Any]) -> bool:
    """Every pod of the Deployment's current revision is up and nothing else runs."""
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    desired = int((deployment.get("spec") or {}).get("replicas", 1))
    return int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0)) and all(
        int(status.get(field, 0)) == desired
        for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )


@dataclass(frozen=True)
class Cause:
    """Why the guard restarts a pod: what goes into its status record and Events."""

    reason: str  # the status record's
    events: str  # the Events' reasons: <events>Restart, <events>RestartHeld
    record: dict[str, Any]  # the status record's fields beyond pod, time and action
    detail: str  # how the Event's message ends
    leak: bool

    @staticmethod
    def of_leak(verdict: Verdict) -> Cause:
        fields = leak_record(verdict)
        return Cause(
            "MemoryLeak",
            "Leak",
            fields,
            f"after a leak of {fields['slopeMiBPerMinute']} MiB/min, "
            f"{fields['projectedSecondsToOOM']} s before its projected OOM",
            leak=True,
        )

    @staticmethod
    def of_config(differences: list[str]) -> Cause:
        return Cause(
            "ConfigNotApplied",
            "ConfigNotApplied",
            {},
            f"as it did not apply models.config ({'; '.join(differences)})",
            leak=False,
        )


def make_source(state: OperatorState) -> Source:
    if state.config.memory_source == "prometheus":
        return PrometheusSource(state.config.prometheus_url)
    return MetricsServerSource(state.api())


class MemoryGuardLoop:
    def __init__(self, state: OperatorState, indexes: watched.Indexes, source: Source) -> None:
        self.state = state
        self.indexes = indexes
        self.source = source
        self.stopped = threading.Event()
        # Filling new watches from the source's past (Prometheus: a range query and
        # up to BACKFILL_SECONDS of samples per pod) must not hold up the sampling.
        self.backfills = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memory-backfill")
        self.thread = threading.Thread(target=self.run, name="memory-guard", daemon=True)

    def run(self) -> None:
        while not self.stopped.wait(TICK_SECONDS):
            try:
                self.tick(time.time())
            except Exception:
                logger.exception("Failed a memory-guard round")

    def tick(self, now: float) -> None:
        seen = set()
        # Fleets whose sample is due, by namespace: one read of the source per
        # namespace per round, not one per fleet (a thousand fleets sampled every
        # 15 s cost the API server and metrics-server 67 requests a second).
        due: dict[str, list[tuple[dict[str, Any], MemoryGuard, FleetWatch]]] = {}
        for body in watched.each_body(self.indexes, watched.MODELSERVER_INDEX):
            meta = body["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            try:
                guard = reconcile.spec_and_plan(self.state, body)[0].memory_guard or MemoryGuard()
            except SpecInvalid:
                continue
            fleet = self.state.fleets.get(key)
            if fleet is None:
                # Restarts survive an operator restart in status: the hourly budget
                # and the back-off hold across it.
                known = (body.get("status") or {}).get("memoryGuard") or {}
                fleet = self.state.fleets[key] = FleetWatch(
                    restarts=list(known.get("restarts") or []),
                    restarts_total=int(known.get("restartsTotal", 0)),
                    last_checkpoint=now,
                    saved=self.saved_histories(*key),
                )
            self.restart_config_not_applied(body, guard, fleet, now)
            if not guard.enabled or now - fleet.last_sampled < guard.sample_interval_seconds:
                continue
            fleet.last_sampled = now
            due.setdefault(key[0], []).append((body, guard, fleet))
        for namespace, fleets in due.items():
            self.sample_namespace(namespace, fleets, now)
        self.land_restarts(now)
        self.state.forget_deleted(seen)

    def land_restarts(self, now: float) -> None:
        """A leak restart stops counting against the operator-wide cap once its
        fleet is ready again (or after IN_FLIGHT_MAX_SECONDS, whatever became of it)."""
        in_flight = self.state.leak_restarts_in_flight
        for key, when in list(in_flight.items()):
            deployment = watched.owned_deployment(self.indexes, *key)
            settled = deployment is None or (
                now - when > MIN_IN_FLIGHT_SECONDS and rollout_complete(deployment)
            )
            if settled or now - when > IN_FLIGHT_MAX_SECONDS:
                in_flight.pop(key, None)

    def saved_histories(self, namespace: str, name: str) -> dict[str, str]:
        """Pod histories a previous operator process saved (read once per fleet)."""
        try:
            saved = kube.read(self.state.api(), "ConfigMap", namespace, checkpoint_name(name))
        except ApiException as error:
            logger.warning(
                "Could not read the saved memory histories of %s/%s: %s",
                namespace,
                name,
                kube.error_message(error),
            )
            return {}
        return dict((saved or {}).get("data") or {})

    def checkpoint(self, body: dict[str, Any], fleet: FleetWatch, now: float) -> None:
        period = self.state.config.guard_checkpoint_seconds
        if not fleet.pods or now - fleet.last_checkpoint < period:
            return
        meta = body["metadata"]
        owner = Owner(meta["name"], meta["namespace"], meta["uid"])
        try:
            kube.apply(self.state.api(), checkpoint_config_map(owner, fleet))
        except ApiException as error:
            logger.warning(
                "Could not save the memory histories of %s/%s: %s",
                owner.namespace,
                owner.name,
                kube.error_message(error),
            )
            return
        fleet.last_checkpoint = now

    def backfill(
        self, watch: PodWatch, namespace: str, pod: str, limit: float, interval: float
    ) -> None:
        """Fill a watch from the source's past, on a backfill thread (nothing else
        touches the watch until this is done): from the end of what the watch holds
        (or the process start), at most BACKFILL_SECONDS back, until now."""
        samples = watch.history.samples()
        since = watch.started_at + (samples[-1].seconds if samples else 0.0)
        since = max(since, time.time() - BACKFILL_SECONDS)
        try:
            past = self.source.history(namespace, pod, since + 1, time.time(), interval)
        except SourceError as error:
            logger.warning("No history for %s/%s: %s", namespace, pod, error)
            return
        for reading in past:
            watch.add(reading.stamp, reading.epoch, reading.working_set, limit)
        if past:
            logger.info("Read %d past samples of %s/%s", len(past), namespace, pod)

    def start_filling(
        self, fleet: FleetWatch, watch: PodWatch, pod: dict[str, Any], limit: float, interval: float
    ) -> None:
        """Hand a new (or restarted) watch to the backfill threads when the source
        has a past; the sampling thread takes it back once it is filled."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if not self.source.has_history:
            fleet.pods[name] = watch
            return
        fleet.pods.pop(name, None)
        done = self.backfills.submit(self.backfill, watch, namespace, name, limit, interval)
        fleet.filling[name] = Filling(watch, done)

    def filled(self, fleet: FleetWatch, pod_name: str) -> PodWatch | None:
        """A watch whose backfill is done, with the live readings that waited for
        it added; None while it is still being filled."""
        filling = fleet.filling.get(pod_name)
        if filling is None:
            return fleet.pods.get(pod_name)
        if not filling.done.done():
            return None
        del fleet.filling[pod_name]
        if error := filling.done.exception():
            logger.warning("Could not fill the history of %s: %s", pod_name, error)
        watch = fleet.pods[pod_name] = filling.watch
        for stamp, epoch_seconds, working_set, limit, loading in filling.waiting:
            watch.add(stamp, epoch_seconds, working_set, limit, loading=loading)
        return watch

    def watch_pod(
        self,
        fleet: FleetWatch,
        pod: dict[str, Any],
        guard: MemoryGuard,
        limit: float,
    ) -> PodWatch | None:
        """The pod's watch, created (or restored from a checkpoint) on first sight,
        restarted with a fresh history when its container restarted; both filled
        from the source's past when it has one (None until that is done)."""
        detector, policy = settings_for(guard)
        pod_name, uid = pod["metadata"]["name"], pod["metadata"].get("uid", "")
        restart_count, oom_killed, process_started = _container_state(pod)
        if process_started is None:
            return None
        if pod_name in fleet.filling:
            return self.filled(fleet, pod_name)
        watch = fleet.pods.get(pod_name)
        new = watch is None
        if watch is None:
            saved = fleet.saved.pop(pod_name, None)
            watch = saved and restore_pod(saved, uid=uid, detector=detector, policy=policy)
            if not watch:
                watch = PodWatch(
                    uid,
                    process_started,
                    detector,
                    LeakTracker(policy),
                    History(detector),
                    restart_count=restart_count,
                )
        # A restored watch may be of a process that restarted while no operator ran.
        if restart_count > watch.restart_count:
            watch.process_restarted(
                restart_count=restart_count, oom_killed=oom_killed, started_at=process_started
            )
            new = True
        if new:
            self.start_filling(fleet, watch, pod, limit, guard.sample_interval_seconds)
        return self.filled(fleet, pod_name)

    def sample_namespace(
        self,
        namespace: str,
        fleets: list[tuple[dict[str, Any], MemoryGuard, FleetWatch]],
        now: float,
    ) -> None:
        """One read of the namespace's serving pods, judged fleet by fleet. A source
        that does not answer is reported on every fleet it left unsampled."""
        try:
            readings = self.source.readings(namespace)
            error = ""
        except ApiException as failure:
            readings, error = {}, kube.error_message(failure)
        except SourceError as failure:
            readings, error = {}, str(failure)
        if error:
            logger.warning(
                "Could not sample the serving pods of namespace %s: %s", namespace, error
            )
        for body, guard, fleet in fleets:
            fleet.source_error = error
            if error:
                continue
            try:
                self.sample(body, guard, fleet, readings, now)
            except ApiException as failure:  # an Event or a restart the API refused
                meta = body["metadata"]
                logger.warning(
                    "Could not sample %s/%s: %s",
                    meta["namespace"],
                    meta["name"],
                    kube.error_message(failure),
                )

    def sample(
        self,
        body: dict[str, Any],
        guard: MemoryGuard,
        fleet: FleetWatch,
        readings: dict[str, Reading],
        now: float,
    ) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        pods = {p["metadata"]["name"]: p for p in watched.owned_pods(self.indexes, namespace, name)}
        for pod_name in (set(fleet.pods) | set(fleet.filling)) - set(pods):
            fleet.pods.pop(pod_name, None)
            fleet.filling.pop(pod_name, None)
            fleet.held.pop(pod_name, None)
            metrics.forget_pod(namespace, pod_name)
        for pod_name in set(fleet.unwatched) - set(pods):
            fleet.unwatched.pop(pod_name)
        for pod_name, pod in pods.items():
            limit, reading = _limit(pod), readings.get(pod_name)
            if not limit:
                if pod_name not in fleet.unwatched:
                    fleet.unwatched[pod_name] = "has no memory limit"
                    self.state.events.send(
                        body,
                        kind="Warning",
                        reason="MemoryNotWatched",
                        message=f"Pod {pod_name} has no memory limit on its serving container "
                        "(a LimitRange or an admission webhook removed it?): without one "
                        "no leak can be projected to an OOM, so the memory guard skips it.",
                    )
                continue
            fleet.unwatched.pop(pod_name, None)
            if reading is None:
                continue
            loading = pod_name in self.state.loading.get((namespace, name), ())
            watch = self.watch_pod(fleet, pod, guard, limit)
            if watch is None:
                if filling := fleet.filling.get(pod_name):
                    filling.wait(reading.stamp, reading.epoch, reading.working_set, limit, loading)
                continue
            wants_restart = watch.add(
                reading.stamp, reading.epoch, reading.working_set, limit, loading=loading
            )
            verdict = watch.verdict
            if verdict is None:
                continue
            metrics.observe_verdict(namespace, pod_name, verdict)
            if watch.tracker.leaking_since is None:
                watch.reported = False
            if verdict.leaking and not watch.reported:
                # Once per leak (a verdict that flickers under sawtooth is one leak).
                watch.reported = True
                metrics.LEAK_VERDICTS.labels(namespace, name).inc()
                message = describe_leak(pod_name, verdict)
                logger.warning(message)
                self.state.events.send(
                    body, kind="Warning", reason="MemoryLeakSuspected", message=message
                )
            if wants_restart:
                self.restart(
                    body,
                    guard,
                    fleet,
                    Cause.of_leak(verdict),
                    pod_name=pod_name,
                    pods=pods,
                    now=now,
                )
        self.checkpoint(body, fleet, now)

    def restart_config_not_applied(
        self, body: dict[str, Any], guard: MemoryGuard, fleet: FleetWatch, now: float
    ) -> None:
        """The config watchdog's opt-in: restart one pod that did not apply
        models.config (the reconcile found it) through the same safe path."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        lagging = self.state.config_lagging.get(key)
        if not lagging:
            return
        traffic = reconcile.spec_and_plan(self.state, body)[0].traffic or Traffic()
        if not traffic.restart_when_config_not_applied:
            return
        pods = {p["metadata"]["name"]: p for p in watched.owned_pods(self.indexes, *key)}
        for pod_name in sorted(set(lagging) & set(pods)):
            cause = Cause.of_config(lagging[pod_name])
            self.restart(body, guard, fleet, cause, pod_name=pod_name, pods=pods, now=now)
            return  # one at a time

    def restart(
        self,
        body: dict[str, Any],
        guard: MemoryGuard,
        fleet: FleetWatch,
        cause: Cause,
        *,
        pod_name: str,
        pods: dict[str, dict[str, Any]],
        now: float,
    ) -> None:
        """Restart one pod when the caps allow it, else say why not (once per reason).
        A leaking pod must be ready (else it is still starting); a pod that did not
        apply its config fails its readiness gate, so TF Serving being up suffices."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        up = pod_ready if cause.leak else pod_serving
        deployment = watched.owned_deployment(self.indexes, namespace, name) or {}
        desired = int(deployment.get("spec", {}).get("replicas", 1))
        in_flight = self.state.leak_restarts_in_flight
        decision = restart_decision(
            guard=guard,
            pod=pod_name,
            pod_ready=up(pods[pod_name]),
            now=now,
            restarts=[epoch(r["time"]) for r in fleet.restarts],
            desired=desired,
            ready_pods={p for p, pod in pods.items() if up(pod)},
            rollout_complete=rollout_complete(deployment),
            in_flight_elsewhere=len(set(in_flight) - {(namespace, name)}),
            max_in_flight=self.state.config.max_leak_restarts_in_flight,
            leak=cause.leak,
        )
        if decision.action is None:
            logger.info("Did not restart %s/%s yet: %s", namespace, pod_name, decision.reason)
            if decision.held and fleet.held.get(pod_name) != decision.reason:
                fleet.held[pod_name] = decision.reason
                self.state.events.send(
                    body,
                    kind="Warning",
                    reason=f"{cause.events}RestartHeld",
                    message=f"Not restarting pod {pod_name} ({cause.reason}): {decision.reason}",
                )
            return
        api = self.state.api()
        when = now_iso()
        if decision.action == "evict":
            if not kube.evict(api, namespace, pod_name):
                logger.info("The PodDisruptionBudget holds %s/%s for now", namespace, pod_name)
                return
        else:
            kube.rollout_restart(api, namespace, name, when)
        in_flight[(namespace, name)] = now
        record = {
            "pod": pod_name,
            "time": when,
            "action": decision.action,
            "reason": cause.reason,
            **cause.record,
        }
        fleet.restarts = [*fleet.restarts, record][-10:]
        fleet.restarts_total += 1
        fleet.pods.pop(pod_name, None)
        fleet.filling.pop(pod_name, None)
        fleet.held.pop(pod_name, None)
        (metrics.LEAK_RESTARTS if cause.leak else metrics.CONFIG_RESTARTS).labels(
            namespace, name
        ).inc()
        message = (
            f"Restarted pod {namespace}/{pod_name} ({decision.action}: "
            f"{decision.reason}) {cause.detail}"
        )
        logger.warning(message)
        self.state.events.send(
            body, kind="Warning", reason=f"{cause.events}Restart", message=message
        )
        reconcile.refresh_status(self.state, body, self.indexes)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.backfills.shutdown(wait=False, cancel_futures=True)


def start(state: OperatorState, indexes: watched.Indexes) -> MemoryGuardLoop:
    loop = MemoryGuardLoop(state, indexes, make_source(state))
    loop.start()
    logger.info("Started the memory guard (every %ss)", TICK_SECONDS)
    return loop
