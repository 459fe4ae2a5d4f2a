"""When a leak verdict becomes a restart, and how."""

from __future__ import annotations

from tfops.memory.detector import Verdict
from tfops.memory.policy import LeakTracker, PolicySettings, restart_decision
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


def test_max_restarts_per_hour_above_four_is_reachable() -> None:
    """The back-off doubles from 300 s but never beyond an hour shared out by the
    cap: with 10 per hour, a restart every 6 minutes is allowed."""
    from tfops.memory.policy import backoff_seconds

    assert [backoff_seconds(n, 2) for n in (1, 2, 3)] == [300, 600, 1200]
    assert [backoff_seconds(n, 10) for n in (1, 2, 5)] == [300, 360, 360]
    guard = MemoryGuard(max_restarts_per_hour=10)
    restarts = [NOW - 3000 + 361 * i for i in range(8)]  # 8 in the hour, 6 min apart
    assert _decide(guard, restarts=restarts)[0] == "evict"


def test_waiting_for_the_rest_of_the_fleet_is_reported_as_held() -> None:
    decision = restart_decision(
        guard=MemoryGuard(), pod="a", pod_ready=True, now=NOW, restarts=[], desired=2,
        ready_pods={"a"},
    )  # fmt: skip
    assert decision.action is None and decision.held


def test_one_replica_is_not_rolled_again_before_the_previous_rollout_completes() -> None:
    held = _decide(desired=1, ready_pods={"a"}, rollout_complete=False)
    assert held == (None, "the previous rollout has not completed")
    assert _decide(desired=1, ready_pods={"a"}, rollout_complete=True)[0] == "rollout"


def test_leak_restarts_in_flight_are_capped_across_modelservers() -> None:
    capped = _decide(in_flight_elsewhere=2, max_in_flight=2)
    assert capped[0] is None and "--max-leak-restarts-in-flight 2" in capped[1]
    assert _decide(in_flight_elsewhere=1, max_in_flight=2)[0] == "evict"


def test_a_rollout_is_complete_only_when_every_pod_of_the_revision_is_up() -> None:
    from tfops.guard_loop import rollout_complete

    def deployment(generation: int, observed: int, **counts: int) -> dict[str, object]:
        status = {"observedGeneration": observed, **counts}
        return {"metadata": {"generation": generation}, "spec": {"replicas": 1}, "status": status}

    done = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    assert rollout_complete(deployment(3, 3, **done))
    assert not rollout_complete(deployment(4, 3, **done))  # not yet observed
    surging = {**done, "replicas": 2}  # the replacement beside the old pod
    assert not rollout_complete(deployment(3, 3, **surging))
    assert not rollout_complete(deployment(3, 3, **{**done, "readyReplicas": 0}))


def test_a_config_restart_is_opted_in_apart_from_the_leak_mode_but_shares_the_caps() -> None:
    alert = MemoryGuard(mode="Alert")
    assert _decide(alert, leak=False)[0] == "evict"
    assert _decide(alert)[0] is None
    # The fleet's hourly budget and back-off count both kinds of restart.
    action, reason = _decide(alert, leak=False, restarts=[NOW - 60])
    assert action is None and "backing off" in reason


def _leak_verdict(seconds: float, seconds_to_limit: float) -> Verdict:
    return Verdict(seconds, True, 1.0, seconds_to_limit, 0.9, "7200s window")


def test_a_leak_seen_for_a_day_is_restarted_hours_before_its_projected_oom() -> None:
    """An hour ahead is too late for a slow drift at 90% of its limit, where one
    burst can land the OOM; the longer a leak has been seen, the earlier."""
    tracker = LeakTracker(PolicySettings())
    for minute in range(0, 10 * 60):  # ten hours of verdicts, OOM 2.5 h ahead
        assert not tracker.observe(_leak_verdict(minute * 60.0, 9000.0))
    for minute in range(10 * 60, 17 * 60):
        if tracker.observe(_leak_verdict(minute * 60.0, 9000.0)):
            break
    # 15% of the leak's age reaches 9000 s at 60,000 s (16 h 40 min); the OOM is
    # then projected that near for the 90 s sustain period.
    assert minute * 60.0 == 60_120.0


def test_one_verdict_of_a_near_oom_in_a_rise_held_for_hours_restarts_nothing() -> None:
    """A daily swing's rising half holds leak verdicts for hours with its OOM far
    away; one short window's noisy verdict of an OOM 20 minutes off is not a leak
    about to land. Near verdicts for the sustain period are."""
    tracker = LeakTracker(PolicySettings())
    for minute in range(0, 5 * 60):
        assert not tracker.observe(_leak_verdict(minute * 60.0, 25_000.0))
    assert not tracker.observe(_leak_verdict(300 * 60.0, 1200.0))
    assert not tracker.observe(_leak_verdict(301 * 60.0, 25_000.0))
    assert not tracker.observe(_leak_verdict(302 * 60.0, 1200.0))
    assert not tracker.observe(_leak_verdict(303 * 60.0, 1150.0))
    assert tracker.observe(_leak_verdict(304 * 60.0, 1100.0))


def test_a_lull_in_a_long_leak_is_not_a_new_start() -> None:
    tracker = LeakTracker(PolicySettings())
    for minute in range(0, 10 * 60):
        tracker.observe(_leak_verdict(minute * 60.0, 90_000.0))
    # 50 minutes without a leak verdict after ten hours of them: under 10% of its age.
    for minute in range(10 * 60, 10 * 60 + 50):
        tracker.observe(Verdict(minute * 60.0, False, 0.0, None, 0.9, "150s floor not rising"))
    assert tracker.leaking_since == 0.0
    # Seen for minutes only, a 15-minute lull starts the count again.
    short = LeakTracker(PolicySettings())
    for minute in range(5):
        short.observe(_leak_verdict(minute * 60.0, 90_000.0))
    for minute in range(5, 21):
        short.observe(Verdict(minute * 60.0, False, 0.0, None, 0.9, "150s floor not rising"))
    assert short.leaking_since is None
