"""When a leak verdict becomes a restart. Pure: state in, decision out."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfops.memory.detector import Verdict
from tfops.model import MemoryGuard

# After a leak restart, the next waits this long, doubling per restart in the hour
# but never longer than an hour shared out by maxRestartsPerHour (else a cap above
# four could never be reached: 300 + 600 + 1200 + 2400 s fill the hour).
BACKOFF_SECONDS = 300.0


def backoff_seconds(restarts_in_hour: int, max_restarts_per_hour: int) -> float:
    """How long after the last leak restart the next may come."""
    doubling = BACKOFF_SECONDS * 2 ** max(0, restarts_in_hour - 1)
    return min(doubling, 3600.0 / max_restarts_per_hour)


@dataclass(frozen=True)
class PolicySettings:
    # A leak verdict must hold this long (or this share of the time left until the
    # projected OOM, when longer) before anything is done about it...
    sustain_seconds: float = 90.0
    time_left_share: float = 0.5
    # ...unless the projected OOM is this near: waiting could let it land.
    act_at_once_seconds: float = 180.0
    # A leak verdict is forgotten after this long without another, or this share
    # of the time the leak had held when longer: a leak under sawtooth or bursty
    # load shows in some verdicts, not in every one, and a lull of minutes in a
    # leak seen for a day is no sign that it stopped.
    forget_seconds: float = 600.0
    forget_share_of_leak: float = 0.1
    # Restart once the projected OOM is this close, or closer than this share of
    # the time the leak has been seen (a leak seen growing for a day is restarted
    # about 3.6 hours ahead: a burst on top of it cannot be foreseen an hour
    # ahead); never on usage alone (a tightly sized pod swinging daily to 87% is
    # not near an OOM, and its rising half lasts at most half a day).
    restart_before_seconds: float = 3600.0
    restart_before_share_of_leak: float = 0.15


@dataclass
class LeakTracker:
    """Per pod: since when the verdicts have said "leaking". A leak under sawtooth
    or bursty load can miss verdicts; only a pause longer than forget_seconds (or
    its share of the leak's age) starts the count again."""

    settings: PolicySettings = field(default_factory=PolicySettings)
    leaking_since: float | None = None
    last_leaking: float | None = None
    # Since when the leak verdicts have projected the OOM near (None: the last did
    # not): one window's noisy verdict of a near OOM, in a slow rise held for hours
    # (a daily swing), must not restart a pod at once.
    near_since: float | None = None

    def observe(self, verdict: Verdict) -> bool:
        """Record a verdict; True when the pod should be restarted now: the projected
        OOM is near (see PolicySettings) and has been for the sustain period, and
        the leak has held for the sustain period or half the time left, unless the
        OOM is too near to wait."""
        if not verdict.leaking:
            if self.last_leaking is not None and self.leaking_since is not None:
                held = self.last_leaking - self.leaking_since
                lull = verdict.seconds - self.last_leaking
                if lull > max(
                    self.settings.forget_seconds, self.settings.forget_share_of_leak * held
                ):
                    self.leaking_since = self.last_leaking = self.near_since = None
            return False
        if self.leaking_since is None:
            self.leaking_since = verdict.seconds
        self.last_leaking = verdict.seconds
        eta = verdict.seconds_to_limit
        if eta is None:
            return False
        # Held long enough: the sustain period, or half the time left when
        # that is longer (a warm-up after first traffic climbs like a leak for
        # minutes, then slows: while the OOM is far, there is time to be sure).
        held = verdict.seconds - self.leaking_since
        near = eta <= max(
            self.settings.restart_before_seconds,
            self.settings.restart_before_share_of_leak * held,
        )
        if not near:
            self.near_since = None
            return False
        if self.near_since is None:
            self.near_since = verdict.seconds
        if eta <= self.settings.act_at_once_seconds:
            return True
        needed = max(self.settings.sustain_seconds, self.settings.time_left_share * eta)
        return held >= needed and verdict.seconds - self.near_since >= self.settings.sustain_seconds


@dataclass(frozen=True)
class Decision:
    action: str | None  # "evict", "rollout" or None
    reason: str
    # Held back by the hourly cap or the back-off (worth telling users), not by a
    # passing state such as a pod still starting.
    held: bool = False


def restart_decision(
    *,
    guard: MemoryGuard,
    pod: str,
    pod_ready: bool,
    now: float,
    restarts: list[float],
    desired: int,
    ready_pods: set[str],
    rollout_complete: bool = True,
    in_flight_elsewhere: int = 0,
    max_in_flight: int | None = None,
    leak: bool = True,
) -> Decision:
    """Whether and how to restart a pod the policy found leaking (`leak`), or one
    the config watchdog asks to restart (opted in by its own field, so the guard's
    Alert mode does not hold it). Both share the fleet's hourly budget and back-off.

    `in_flight_elsewhere`: restarts other ModelServers have made whose fleets are
    not ready again; `max_in_flight` caps them operator-wide (a leak in every
    image, e.g. a bad library, must not evict one pod of every fleet at once)."""
    if leak and guard.mode != "Restart":
        return Decision(None, "mode is Alert")
    recent = sorted(t for t in restarts if now - t < 3600)
    if len(recent) >= guard.max_restarts_per_hour:
        return Decision(
            None,
            f"{len(recent)} restarts in the last hour already "
            f"(maxRestartsPerHour {guard.max_restarts_per_hour})",
            held=True,
        )
    if recent:
        backoff = backoff_seconds(len(recent), guard.max_restarts_per_hour)
        if now - recent[-1] < backoff:
            return Decision(
                None, f"backing off for {backoff:.0f}s after the last restart", held=True
            )
    if not pod_ready:
        return Decision(None, "the pod is not ready (still starting)")
    if max_in_flight is not None and in_flight_elsewhere >= max_in_flight:
        return Decision(
            None,
            f"{in_flight_elsewhere} restart(s) of other ModelServers are still in "
            f"flight (the operator's --max-leak-restarts-in-flight {max_in_flight})",
            held=True,
        )
    others = ready_pods - {pod}
    if desired >= 2:
        if len(others) < desired - 1:
            return Decision(None, "waiting until the rest of the fleet is ready", held=True)
        # The PodDisruptionBudget (maxUnavailable 1) guards the eviction too.
        return Decision("evict", "the rest of the fleet keeps serving")
    if not rollout_complete:
        # The replacement of a previous restart may still be loading its models.
        return Decision(None, "the previous rollout has not completed", held=True)
    # A single replica: bring a replacement up first (maxSurge 1, maxUnavailable 0).
    return Decision("rollout", "a replacement starts before the leaking pod goes")
