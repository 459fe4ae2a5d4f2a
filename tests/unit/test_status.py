"""Status is a pure function of what the handler observed."""

from __future__ import annotations

from typing import Any

from tfops.model import parse_spec
from tfops.model_status import VersionStatus
from tfops.plan import make_plan
from tfops.schema import SpecError, SpecInvalid
from tfops.status import Observation, compute_status, status_patch

SPEC = parse_spec(
    {
        "models": [
            {
                "name": "ranker",
                "basePath": "gs://b/ranker",
                "versionPolicy": {"specific": [47, 48]},
                "versionLabels": {"stable": 47},
            }
        ],
        "replicas": 2,
    }
)
PLAN = make_plan(SPEC)
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def _deployment(ready: int = 2, updated: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": updated,
            "readyReplicas": ready,
        },
    }


def _pod(name: str, ready: bool = True, oom_at: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "tensorflow-serving"}
    if oom_at:
        container["lastState"] = {"terminated": {"reason": "OOMKilled", "finishedAt": oom_at}}
    return {
        "metadata": {"name": name, "namespace": "ml"},
        "status": {
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "containerStatuses": [container],
        },
    }


def _versions(*states: tuple[int, str]) -> dict[str, list[VersionStatus]]:
    return {"ranker": [VersionStatus(v, s) for v, s in states]}


def _status(
    observation: Observation, previous: dict[str, Any] | None = None, now: str = T0
) -> dict[str, Any]:
    return compute_status(
        generation=3,
        spec=SPEC,
        plan=PLAN,
        invalid=None,
        observation=observation,
        previous=previous or {},
        now=now,
    )


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


AVAILABLE = _versions((47, "AVAILABLE"), (48, "AVAILABLE"))


def test_ready_when_every_configured_version_is_available_on_every_ready_pod() -> None:
    status = _status(
        Observation(_deployment(), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": AVAILABLE})
    )
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "AllModelsAvailable")
    assert status["models"] == [
        {
            "name": "ranker",
            "labels": {"stable": 47},
            "versions": [
                {"version": 47, "state": "AVAILABLE", "availablePods": 2},
                {"version": 48, "state": "AVAILABLE", "availablePods": 2},
            ],
        }
    ]
    assert (status["replicasSummary"], status["modelsSummary"]) == ("2/2", "1/1")
    assert _condition(status, "Progressing")["status"] == "False"
    assert _condition(status, "Degraded")["status"] == "False"


def test_not_ready_while_a_version_loads_on_one_pod() -> None:
    loading = _versions((47, "AVAILABLE"), (48, "LOADING"))
    status = _status(
        Observation(_deployment(), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": loading})
    )
    assert _condition(status, "Ready")["reason"] == "ModelsNotAvailable"
    assert _condition(status, "Progressing")["message"] == "Loading ranker."
    assert status["models"][0]["versions"][1]["state"] == "Mixed"


def test_a_failed_load_degrades_with_tf_servings_error_text() -> None:
    failed = {
        "ranker": [
            VersionStatus(47, "AVAILABLE"),
            VersionStatus(48, "END", "NOT_FOUND", "Could not find base path"),
        ]
    }
    status = _status(Observation(_deployment(), [_pod("a"), _pod("b")], {"a": failed, "b": failed}))
    degraded = _condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ModelLoadFailed")
    assert "version 48 failed to load: Could not find base path" in degraded["message"]
    assert _condition(status, "Ready")["status"] == "False"


def test_an_unreachable_pod_makes_model_state_unknown() -> None:
    status = _status(
        Observation(
            _deployment(), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": "connection refused"}
        )
    )
    ready = _condition(status, "Ready")
    assert ready["reason"] == "ModelStatusUnknown" and "pod b" in ready["message"]


def test_rollouts_are_progressing_and_pods_not_ready() -> None:
    status = _status(
        Observation(
            _deployment(ready=1, updated=1), [_pod("a"), _pod("b", ready=False)], {"a": AVAILABLE}
        )
    )
    assert _condition(status, "Ready")["reason"] == "PodsNotReady"
    assert _condition(status, "Progressing")["message"] == "Rolling out: 1 of 2 pods updated."


def test_last_transition_time_is_kept_while_the_status_holds() -> None:
    observation = Observation(
        _deployment(), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": AVAILABLE}
    )
    first = _status(observation, now=T0)
    again = _status(observation, previous=first, now=T1)
    assert _condition(again, "Ready")["lastTransitionTime"] == T0
    assert status_patch(first, again) == {}


def test_oom_kills_are_counted_once_and_degrade_for_a_while() -> None:
    pods = [_pod("a", oom_at="2026-01-01T00:00:00Z"), _pod("b")]
    observation = Observation(_deployment(), pods, {"a": AVAILABLE, "b": AVAILABLE})
    first = _status(observation, now="2026-01-01T00:01:00Z")
    assert first["oomKills"]["total"] == 1 and first["oomKills"]["lastPod"] == "a"
    assert _condition(first, "Degraded")["reason"] == "OOMKilled"
    later = _status(observation, previous=first, now="2026-01-01T01:00:00Z")
    assert later["oomKills"]["total"] == 1
    assert _condition(later, "Degraded")["status"] == "False"


def test_an_invalid_spec_keeps_what_was_known_of_the_fleet() -> None:
    good = _status(
        Observation(_deployment(), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": AVAILABLE})
    )
    invalid = SpecInvalid([SpecError("spec.resources.limits.memory", "too small")])
    status = compute_status(
        generation=4,
        spec=None,
        plan=None,
        invalid=invalid,
        observation=Observation(),
        previous=good,
        now=T1,
    )
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.resources.limits.memory: too small" in ready["message"]
    assert status["effective"] == good["effective"]
    assert status["observedGeneration"] == 4


def test_a_leak_verdict_becomes_the_memory_leak_suspected_condition() -> None:
    from tfops.memory.detector import Verdict

    leak = Verdict(600, True, 2**20 / 60 * 48, 1200, 0.55, "900s window")
    status = _status(
        Observation(
            _deployment(),
            [_pod("a"), _pod("b")],
            {"a": AVAILABLE, "b": AVAILABLE},
            leaks={"a": leak},
            guard_restarts_total=3,
        )
    )
    suspected = _condition(status, "MemoryLeakSuspected")
    assert (suspected["status"], suspected["reason"]) == ("True", "LeakDetected")
    assert suspected["message"].startswith("Pod a is leaking 48.0 MiB/min (55% of its limit)")
    assert "about 20 min" in suspected["message"]
    assert status["memoryGuard"]["restartsTotal"] == 3
    calm = _status(
        Observation(_deployment(), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": AVAILABLE})
    )
    assert _condition(calm, "MemoryLeakSuspected")["reason"] == "NoLeak"


def test_under_latest_an_older_failure_is_history_once_a_newer_version_serves() -> None:
    spec = parse_spec({"models": [{"name": "ranker", "basePath": "gs://b/ranker"}]})
    plan = make_plan(spec)

    def status_with(*versions: VersionStatus) -> dict[str, Any]:
        states = {"ranker": list(versions)}
        return compute_status(
            generation=1,
            spec=spec,
            plan=plan,
            invalid=None,
            observation=Observation(
                _deployment(), [_pod("a"), _pod("b")], {"a": states, "b": states}
            ),
            previous={},
            now=T0,
        )

    broken = VersionStatus(5, "END", "DATA_LOSS", "truncated graph")
    newer = status_with(broken, VersionStatus(6, "AVAILABLE"))
    assert _condition(newer, "Ready")["status"] == "True"
    assert _condition(newer, "Degraded")["status"] == "False"
    # The newest version failed and nothing newer serves: not Ready, with the error.
    newest = status_with(VersionStatus(4, "END"), broken)
    assert _condition(newest, "Ready")["status"] == "False"
    assert "truncated graph" in _condition(newest, "Degraded")["message"]


def test_tf_serving_exiting_at_start_up_is_reported_with_its_log() -> None:
    pod = _pod("a")
    pod["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {
            "reason": "Error",
            "exitCode": 255,
            "finishedAt": T0,
            "message": "Request to assign label to version 48 of model ranker, which is not "
            "currently available for inference",
        }
    }
    status = _status(Observation(_deployment(), [pod, _pod("b")], {"a": AVAILABLE, "b": AVAILABLE}))
    degraded = _condition(status, "Degraded")
    assert degraded["reason"] == "ServingExited"
    assert "exited with code 255" in degraded["message"] and "version 48" in degraded["message"]


def full_status() -> dict[str, Any]:
    """A status with every part the operator writes: models, effective settings, an
    OOM kill, a promotion and the memory guard's restarts."""
    promotion = {"model": "ranker", "step": "Done", "generation": 3, "startedAt": T0}
    restart = {"pod": "c", "time": T0, "action": "evict", "slopeMiBPerMinute": 48.0}
    return _status(
        Observation(
            _deployment(),
            [_pod("a", oom_at=T0), _pod("b")],
            {"a": AVAILABLE, "b": AVAILABLE},
            models_checked=True,
            promotions=[promotion],
            guard_restarts=[restart],
            guard_restarts_total=1,
        )
    )


def test_a_full_status_carries_every_part() -> None:
    status = full_status()
    assert {"models", "effective", "oomKills", "promotions", "memoryGuard"} <= set(status)


def test_a_pod_that_never_applied_models_config_is_reported_degraded() -> None:
    observation = Observation(
        _deployment(),
        [_pod("a"), _pod("b")],
        {"a": AVAILABLE, "b": AVAILABLE},
        config_not_applied={"b": ["model ranker version(s) 48 not reported"]},
        config_age_seconds=412,
    )
    degraded = _condition(_status(observation), "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ConfigNotApplied")
    assert "Pod b" in degraded["message"] and "version(s) 48 not reported" in degraded["message"]
    assert "412s" in degraded["message"] and "delete the pod" in degraded["message"]


def test_a_guard_that_cannot_watch_says_unknown_not_no_leak() -> None:
    observation = Observation(
        _deployment(),
        [_pod("a"), _pod("b")],
        {"a": AVAILABLE, "b": AVAILABLE},
        guard_blind_spot="the memory source did not answer: metrics.k8s.io 503",
    )
    leak = _condition(_status(observation), "MemoryLeakSuspected")
    assert (leak["status"], leak["reason"]) == ("Unknown", "NotWatched")
    assert "metrics.k8s.io 503" in leak["message"]
    seen = _condition(
        _status(Observation(_deployment(), [_pod("a")], {"a": AVAILABLE})), "MemoryLeakSuspected"
    )
    assert (seen["status"], seen["reason"]) == ("False", "NoLeak")


def test_ready_waits_until_the_pods_take_traffic_through_their_gates() -> None:
    """Both pods serve every model, but one's readiness gate has not opened yet."""
    observation = Observation(
        _deployment(ready=1), [_pod("a"), _pod("b")], {"a": AVAILABLE, "b": AVAILABLE}
    )
    ready = _condition(_status(observation), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodsNotReady")
    assert "1 of 2 pods take traffic" in ready["message"]
