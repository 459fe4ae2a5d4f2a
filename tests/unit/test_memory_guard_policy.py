"""When a leak verdict becomes a restart, and how."""

from __future__ import annotations

from tfops.memory.policy import restart_decision
from tfops.model import MemoryGuard

NOW = 100_000.0


def _decide(guard: MemoryGuard | None = None, **overrides: object) -> tuple[str | None, str]:
    arguments: dict[str, object] = {
        "guard": guard or MemoryGuard(),
        "pod": "a",
        "pod_ready": True,
        "now": NOW,
        "restarts": [],
        "desired": 2,
        "ready_pods": {"a", "b"},
    }
    arguments.update(overrides)
    decision = restart_decision(**arguments)  # type: ignore[arg-type]
    return decision.action, decision.reason


def test_evicts_when_the_rest_of_the_fleet_keeps_serving() -> None:
    assert _decide()[0] == "evict"


def test_waits_while_the_rest_of_the_fleet_is_not_ready() -> None:
    assert _decide(ready_pods={"a"}) == (None, "waiting until the rest of the fleet is ready")


def test_a_single_replica_gets_a_replacement_first() -> None:
    assert _decide(desired=1, ready_pods={"a"})[0] == "rollout"


def test_never_restarts_a_pod_still_starting() -> None:
    assert _decide(pod_ready=False)[0] is None


def test_alert_mode_only_reports() -> None:
    assert _decide(MemoryGuard(mode="Alert")) == (None, "mode is Alert")


def test_the_hourly_cap_and_the_back_off_hold() -> None:
    capped = _decide(restarts=[NOW - 3000, NOW - 600])
    assert capped[0] is None and "maxRestartsPerHour 2" in capped[1]
    assert _decide(restarts=[NOW - 100])[0] is None  # backing off
    assert _decide(restarts=[NOW - 400])[0] == "evict"
    assert _decide(restarts=[NOW - 4000, NOW - 3700])[0] == "evict"
