"""The memory guard end to end, on the scenarios of guard_scenarios.py (kwok drives
the pods' memory, metrics-server serves it, the operator acts through the
Eviction API and the Deployment). These tests run last; the scenarios have been
running in the background since the first integration test."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.integration.guard_scenarios import NAME, GuardScenarios
from tests.integration.load_scenarios import NAME as LOAD_NAME
from tests.integration.load_scenarios import (
    SLOW_LOAD_SECONDS,
    SLOW_PROMOTE_AT_AGE,
    LoadScenarios,
)
from tfops.quantity import parse_bytes
from tfops.render.common import CONTAINER_NAME
from tfops.testing.fleet import ModelServers, events_for
from tfops.timefmt import epoch

# Generous: the scenarios run beside the rest of the suite on a 2-core machine.
SETUP_SECONDS = 300
# A leak of 60 MiB/min is judged once 300 s of samples are in, then must hold 90 s.
LEAK_SECONDS = 600
# How long after a load ends its pods are watched for a restart.
SETTLED_SECONDS = 120


def _memory_guard_status(scenarios: GuardScenarios, namespace: str) -> dict:
    return ModelServers(scenarios.api, namespace).get(NAME)["status"].get("memoryGuard") or {}


def _events(scenarios: GuardScenarios, namespace: str, reason: str) -> list[client.CoreV1Event]:
    return [e for e in events_for(scenarios.api, namespace, NAME) if e.reason == reason]


@pytest.fixture
def scenarios(guard_scenarios: GuardScenarios) -> GuardScenarios:
    guard_scenarios.wait(
        lambda: guard_scenarios.pair and guard_scenarios.single,
        timeout=SETUP_SECONDS,
        what="the memory-guard scenarios to be set up",
    )
    return guard_scenarios


def test_a_leaking_pod_is_evicted_and_a_healthy_one_never_is(scenarios: GuardScenarios) -> None:
    namespace = scenarios.pair
    scenarios.wait(
        lambda: scenarios.leaky not in scenarios.pods(namespace),
        timeout=SETUP_SECONDS + LEAK_SECONDS,
        what=f"{scenarios.leaky} to be evicted",
    )
    condition = ModelServers(scenarios.api, namespace).condition(NAME, "MemoryLeakSuspected")
    # Events are posted off the guard's thread: waited for, not read at once.
    (reported,) = scenarios.wait(
        lambda: _events(scenarios, namespace, "MemoryLeakSuspected"),
        timeout=10,
        what="the MemoryLeakSuspected Event",
    )
    assert scenarios.leaky in reported.message and "MiB/min" in reported.message
    assert "would reach the limit" in reported.message
    guard = scenarios.wait(
        lambda: (
            _memory_guard_status(scenarios, namespace).get("restartsTotal")
            and _memory_guard_status(scenarios, namespace)
        ),
        timeout=30,
        what="the restart in status",
    )
    (restart,) = guard["restarts"]
    assert (restart["pod"], restart["action"]) == (scenarios.leaky, "evict")
    assert 30 < restart["slopeMiBPerMinute"] < 90  # kwok drives 60 MiB/min
    assert restart["usagePercent"] < 90
    scenarios.wait(
        lambda: _events(scenarios, namespace, "LeakRestart"),
        timeout=10,
        what="the LeakRestart Event",
    )
    assert scenarios.evictions(namespace) == [scenarios.leaky]
    # The Deployment replaced it; the healthy pod was never touched, and the
    # PodDisruptionBudget and the guard kept a ready pod serving throughout.
    scenarios.wait(
        lambda: len(scenarios.pods(namespace)) == 2, timeout=60, what="a replacement pod"
    )
    timeline = scenarios.timelines[namespace]
    assert timeline.first(scenarios.healthy, deleting=True) is None
    assert all(serving for serving in timeline.serving())
    assert condition is None or scenarios.healthy not in condition.get("message", "")


def test_an_operator_killed_mid_leak_resumes_from_its_checkpoint(
    scenarios: GuardScenarios,
) -> None:
    namespace = scenarios.pair
    scenarios.wait(
        lambda: scenarios.restarted_at and scenarios.leaky not in scenarios.pods(namespace),
        timeout=SETUP_SECONDS + LEAK_SECONDS,
        what=f"{scenarios.leaky} to be evicted after the operator's restart",
    )
    assert scenarios.killed_at is not None and scenarios.restarted_at is not None
    evicted_at = scenarios.timelines[namespace].first(scenarios.leaky, deleting=True)
    assert evicted_at is not None and evicted_at > scenarios.killed_at
    # From the saved history the restarted operator acts within a sample or two and
    # the rest of the 90 s sustain; from scratch it would need 300 s of new samples.
    assert evicted_at - scenarios.restarted_at < 150, evicted_at - scenarios.restarted_at
    # Exactly one eviction, one verdict Event: nothing repeated after the restart.
    assert scenarios.evictions(namespace) == [scenarios.leaky]
    scenarios.wait(
        lambda: _events(scenarios, namespace, "MemoryLeakSuspected"),
        timeout=10,
        what="the MemoryLeakSuspected Event",
    )
    assert len(_events(scenarios, namespace, "MemoryLeakSuspected")) == 1
    assert scenarios.operator is not None
    assert (
        scenarios.operator.metric(
            "tfops_leak_restarts_total", namespace=namespace, modelserver=NAME
        )
        == 1
    )


def test_a_single_replica_gets_its_replacement_ready_before_the_leaking_pod_goes(
    scenarios: GuardScenarios,
) -> None:
    namespace, first = scenarios.single, scenarios.first_single_pod
    scenarios.wait(
        lambda: first not in scenarios.pods(namespace),
        timeout=SETUP_SECONDS + LEAK_SECONDS,
        what=f"{first} to be replaced",
    )
    (restart,) = _memory_guard_status(scenarios, namespace)["restarts"]
    assert (restart["pod"], restart["action"]) == (first, "rollout")
    timeline = scenarios.timelines[namespace]
    # Never without a ready pod: the replacement was ready before the old one went.
    assert all(serving for serving in timeline.serving()), timeline.changes
    assert scenarios.evictions(namespace) == []


def test_the_restart_cap_holds_when_the_replacement_leaks_too(scenarios: GuardScenarios) -> None:
    namespace, first = scenarios.single, scenarios.first_single_pod
    held = scenarios.wait(
        lambda: _events(scenarios, namespace, "LeakRestartHeld"),
        timeout=SETUP_SECONDS + 2 * LEAK_SECONDS,
        what="the replacement's restart to be held back",
    )
    (replacement,) = scenarios.pods(namespace)
    assert replacement != first
    assert replacement in held[0].message and "maxRestartsPerHour 1" in held[0].message
    condition = ModelServers(scenarios.api, namespace).condition(NAME, "MemoryLeakSuspected")
    assert condition is not None and condition["status"] == "True"
    assert replacement in condition["message"]
    guard = _memory_guard_status(scenarios, namespace)
    assert guard["restartsTotal"] == 1 and len(guard["restarts"]) == 1


def test_the_prometheus_source_gives_a_restarted_operator_the_past(
    scenarios: GuardScenarios,
) -> None:
    namespace = scenarios.prom
    scenarios.wait(
        lambda: (
            scenarios.prom_restarted_at and scenarios.prom_leaky not in scenarios.pods(namespace)
        ),
        timeout=SETUP_SECONDS + LEAK_SECONDS,
        what=f"{scenarios.prom_leaky} to be evicted after the operator's restart",
    )
    assert scenarios.prom_killed_at is not None and scenarios.prom_restarted_at is not None
    evicted_at = scenarios.timelines[namespace].first(scenarios.prom_leaky, deleting=True)
    assert evicted_at is not None and evicted_at > scenarios.prom_killed_at
    # Killed before any window could judge and restarted with no checkpoint: from
    # scratch it would need 300 s of new samples; Prometheus' past makes it ~160 s.
    assert evicted_at - scenarios.prom_restarted_at < 250, evicted_at - scenarios.prom_restarted_at
    assert scenarios.evictions(namespace) == [scenarios.prom_leaky]
    assert scenarios.prom_operator is not None
    assert "past samples of" in scenarios.prom_operator.log.read_text()
    (restart,) = _memory_guard_status(scenarios, namespace)["restarts"]
    assert 30 < restart["slopeMiBPerMinute"] < 90


def _loads(scenarios: GuardScenarios) -> LoadScenarios:
    loads = scenarios.wait(
        lambda: scenarios.loads and scenarios.loads.pushed and scenarios.loads,
        timeout=SETUP_SECONDS,
        what="the model-load scenarios to be set up",
    )
    assert isinstance(loads, LoadScenarios)
    return loads


def _working_set_mib(scenarios: GuardScenarios, namespace: str) -> dict[str, float]:
    listed = client.CustomObjectsApi(scenarios.api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", namespace, "pods"
    )
    return {
        item["metadata"]["name"]: parse_bytes(container["usage"]["memory"]) / 2**20
        for item in listed["items"]
        for container in item["containers"]
        if container["name"] == CONTAINER_NAME
    }


def test_a_five_minute_model_load_growing_memory_is_not_a_leak(
    scenarios: GuardScenarios,
) -> None:
    """The pods grow 60 MiB/min for five minutes, as the pair scenario's leaking pod
    does (evicted at that pace); here TF Serving reports the version LOADING and
    the promotion is under way, so the guard leaves the growth out."""
    loads = _loads(scenarios)
    namespace = loads.slow
    scenarios.wait(
        lambda: loads.slow_loaded_at and time.time() > loads.slow_loaded_at + SETTLED_SECONDS,
        timeout=SETUP_SECONDS + SLOW_PROMOTE_AT_AGE + SLOW_LOAD_SECONDS + 2 * SETTLED_SECONDS,
        what="the slow load to end and settle",
    )
    assert loads.slow_promoted_at is not None and loads.slow_loaded_at is not None
    assert loads.slow_loaded_at - loads.slow_promoted_at >= SLOW_LOAD_SECONDS - 10
    # The growth was real and seen by the guard's memory source.
    working_set = _working_set_mib(scenarios, namespace)
    assert set(working_set) == loads.slow_pods
    assert all(mib >= 200 + 0.8 * SLOW_LOAD_SECONDS for mib in working_set.values()), working_set
    assert set(scenarios.pods(namespace)) == loads.slow_pods
    assert scenarios.evictions(namespace) == []
    servers = ModelServers(scenarios.api, namespace)
    reasons = {e.reason for e in events_for(scenarios.api, namespace, LOAD_NAME)}
    assert not reasons & {"MemoryLeakSuspected", "LeakRestart", "LeakRestartHeld"}, reasons
    condition = servers.condition(LOAD_NAME, "MemoryLeakSuspected")
    assert condition is not None and condition["status"] == "False", condition
    guard = servers.get(LOAD_NAME)["status"].get("memoryGuard") or {}
    assert not guard.get("restartsTotal")


def test_a_leak_under_repeated_promotions_is_still_caught(scenarios: GuardScenarios) -> None:
    loads = _loads(scenarios)
    namespace, leaky = loads.pushed, loads.pushed_leaky
    scenarios.wait(
        lambda: leaky not in scenarios.pods(namespace),
        timeout=SETUP_SECONDS + 2 * LEAK_SECONDS,
        what=f"{leaky} to be evicted",
    )
    servers = ModelServers(scenarios.api, namespace)
    guard = scenarios.wait(
        lambda: (servers.get(LOAD_NAME)["status"].get("memoryGuard") or {}).get("restarts"),
        timeout=30,
        what="the restart in status",
    )
    (restart,) = guard
    assert (restart["pod"], restart["action"], restart["reason"]) == (leaky, "evict", "MemoryLeak")
    assert 30 < restart["slopeMiBPerMinute"] < 90  # kwok drives 60 MiB/min
    assert restart["usagePercent"] < 100  # before the 1 GiB limit
    # Versions were pushed while it leaked, loads the guard left out.
    evicted = epoch(restart["time"])
    assert len([t for t in loads.pushes if t < evicted]) >= 3, loads.pushes
    assert scenarios.evictions(namespace) == [leaky]
    assert loads.pushed_healthy in scenarios.pods(namespace)
