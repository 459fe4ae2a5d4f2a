"""What the memory guard knows of each pod and fleet (histories, verdicts, restarts),
how it is saved in a checkpoint and restored, and how a leak is described. Pure:
no API calls here (the loop is tfops.guard_loop)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tfops.memory.detector import (
    DetectorSettings,
    History,
    LoadingFilter,
    Sample,
    Verdict,
    growth_slope,
    judge,
    keep_interval_floor,
    observe,
    repeated_oom_verdict,
)
from tfops.memory.policy import LeakTracker, PolicySettings
from tfops.model import MemoryGuard
from tfops.quantity import mib_per_minute
from tfops.render.common import MANAGED_BY, Owner

OOM_SLOPES_KEPT = 5


def settings_for(guard: MemoryGuard) -> tuple[DetectorSettings, PolicySettings]:
    return (
        DetectorSettings(warmup_seconds=float(guard.warmup_seconds)),
        PolicySettings(
            restart_before_seconds=float(guard.restart_before_seconds),
        ),
    )


@dataclass
class PodWatch:
    """One serving pod's history and latest verdict. Times are seconds since the
    serving process started (the container restarts after an OOM kill)."""

    uid: str
    started_at: float  # epoch seconds the serving process started
    detector: DetectorSettings
    tracker: LeakTracker
    history: History
    restart_count: int = 0
    # Growth rates (bytes/s) at the container's OOM kills, oldest first.
    oom_slopes: list[float] = field(default_factory=list)
    last_reading: str = ""
    verdict: Verdict | None = None
    # Whether the current leak has been reported (Event, counter).
    reported: bool = False
    loading: LoadingFilter | None = None

    def __post_init__(self) -> None:
        if self.loading is None:
            self.loading = LoadingFilter(self.detector)

    def add(
        self,
        reading_time: str,
        epoch: float,
        working_set: float,
        limit: float,
        *,
        loading: bool = False,
    ) -> bool:
        """Add a reading (once per metrics timestamp; `loading`: a model version on
        the pod is loading, see LoadingFilter); True when the policy says the pod
        should be restarted now."""
        if reading_time == self.last_reading or epoch < self.started_at:
            return False
        self.last_reading = reading_time
        sample = Sample(epoch - self.started_at, working_set, limit, loading)
        assert self.loading is not None
        verdict = observe(sample, self.history, self.loading, self.detector)
        if verdict is None:
            return False
        if not verdict.leaking and not loading:
            verdict = repeated_oom_verdict(sample, self.oom_slopes, self.detector) or verdict
        self.verdict = verdict
        return self.tracker.observe(verdict)

    def process_restarted(self, *, restart_count: int, oom_killed: bool, started_at: float) -> None:
        """The container restarted: keep how fast it grew if the kernel killed it,
        and start a fresh history (a new process, with its own warm-up)."""
        if oom_killed:
            slope = growth_slope(self.history.samples(), self.detector)
            self.oom_slopes = [*self.oom_slopes, slope][-OOM_SLOPES_KEPT:]
        self.restart_count = restart_count
        self.started_at = started_at
        self.history = History(self.detector)
        self.loading = LoadingFilter(self.detector)
        self.tracker = LeakTracker(self.tracker.settings)
        self.verdict = None


# A pod's live readings kept while its watch is being filled from the past: at 10 s
# sampling, 40 minutes (a Prometheus that slow is reported as an error long before).
WAITING_READINGS_KEPT = 240


@dataclass
class Filling:
    """A pod's watch being filled from the memory source's past off the sampling
    thread; the live readings that come meanwhile wait here and are added after
    (as PodWatch.add's arguments)."""

    watch: PodWatch
    done: Future[None]
    waiting: list[tuple[str, float, float, float, bool]] = field(default_factory=list)

    def wait(
        self, stamp: str, epoch: float, working_set: float, limit: float, loading: bool
    ) -> None:
        self.waiting.append((stamp, epoch, working_set, limit, loading))
        del self.waiting[:-WAITING_READINGS_KEPT]


@dataclass
class FleetWatch:
    """One ModelServer's pods and its leak restarts (epoch seconds, newest last)."""

    pods: dict[str, PodWatch] = field(default_factory=dict)
    # Watches still being filled from the source's past, by pod.
    filling: dict[str, Filling] = field(default_factory=dict)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    restarts_total: int = 0
    last_sampled: float = 0.0
    last_checkpoint: float = 0.0
    # The saved state of pods not yet seen since this operator started.
    saved: dict[str, str] = field(default_factory=dict)
    # Per pod, the last reason a restart was held back (reported once).
    held: dict[str, str] = field(default_factory=dict)
    # Why the guard cannot watch: the memory source's last error, and pods it
    # cannot judge (no memory limit), each reported once as an Event.
    source_error: str = ""
    unwatched: dict[str, str] = field(default_factory=dict)

    def blind_spot(self) -> str:
        """What the guard cannot see right now, for MemoryLeakSuspected=Unknown."""
        if self.source_error:
            return f"the memory source did not answer: {self.source_error}"
        return "; ".join(f"pod {pod} {why}" for pod, why in sorted(self.unwatched.items()))

    def leaks(self) -> dict[str, Verdict]:
        return {
            name: w.verdict
            for name, w in self.pods.items()
            if w.verdict is not None and w.verdict.leaking
        }


def leak_record(verdict: Verdict) -> dict[str, Any]:
    """What a leak restart's status record says of the leak."""
    return {
        "slopeMiBPerMinute": round(mib_per_minute(verdict.slope), 1),
        "projectedSecondsToOOM": None
        if verdict.seconds_to_limit is None
        else round(verdict.seconds_to_limit),
        "usagePercent": round(100 * verdict.usage_fraction, 1),
    }


def describe_leak(pod: str, verdict: Verdict) -> str:
    minutes = (verdict.seconds_to_limit or 0) / 60
    return (
        f"Pod {pod} is leaking {mib_per_minute(verdict.slope):.1f} MiB/min "
        f"({100 * verdict.usage_fraction:.0f}% of its limit); it would reach the limit in "
        f"about {minutes:.0f} min"
    )


# -- checkpoints: a pod's history survives an operator restart ------------------

# The last minutes are kept sample by sample (the short windows need them); older
# samples as each minute's lowest, which is all the longer windows look at.
CHECKPOINT_RAW_SECONDS = 600.0


def checkpoint_pod(watch: PodWatch) -> str:
    """One pod's detection state as compact JSON (a few KiB for six hours)."""
    samples = watch.history.samples()
    newest = samples[-1].seconds if samples else 0.0
    kept: list[Sample] = []
    for sample in samples:
        if sample.seconds < newest - CHECKPOINT_RAW_SECONDS:
            keep_interval_floor(kept, sample, 60.0)
        else:
            kept.append(sample)
    return json.dumps(
        {
            "uid": watch.uid,
            "startedAt": watch.started_at,
            "restartCount": watch.restart_count,
            "oomSlopes": watch.oom_slopes,
            "lastReading": watch.last_reading,
            "reported": watch.reported,
            "leakingSince": watch.tracker.leaking_since,
            "lastLeaking": watch.tracker.last_leaking,
            # Since when the OOM has been projected near: a restarted operator does
            # not wait the sustain period over again.
            "nearSince": watch.tracker.near_since,
            "limit": samples[-1].limit if samples else None,
            # What loads added so far: the samples above are re-based by it.
            "loadingOffset": watch.loading.offset if watch.loading else 0.0,
            # And the time they took: the samples' seconds are moved back by it.
            "loadingSkipped": watch.loading.skipped if watch.loading else 0.0,
            "samples": [[round(s.seconds, 1), round(s.working_set)] for s in kept],
        },
        separators=(",", ":"),
    )


def restore_pod(
    text: str, *, uid: str, detector: DetectorSettings, policy: PolicySettings
) -> PodWatch | None:
    """The state `checkpoint_pod` wrote, if it is of this very pod (same uid) and
    readable; None otherwise (the pod is then watched from scratch)."""
    try:
        data = json.loads(text)
        if data.get("uid") != uid:
            return None
        history = History(detector)
        limit = float(data["limit"] or 0)
        skipped = float(data.get("loadingSkipped") or 0.0)
        for seconds, working_set in data["samples"]:
            history.add(Sample(float(seconds), float(working_set), limit))
        tracker = LeakTracker(
            policy, data.get("leakingSince"), data.get("lastLeaking"), data.get("nearSince")
        )
        watch = PodWatch(
            uid,
            float(data["startedAt"]),
            detector,
            tracker,
            history,
            restart_count=int(data.get("restartCount", 0)),
            oom_slopes=[float(x) for x in data.get("oomSlopes") or []],
            last_reading=str(data.get("lastReading", "")),
            reported=bool(data.get("reported", False)),
            loading=LoadingFilter(
                detector,
                offset=float(data.get("loadingOffset") or 0.0),
                skipped=skipped,
                last_seconds=history.samples()[-1].seconds + skipped
                if len(history)
                else float("-inf"),
            ),
        )
    except (ValueError, TypeError, KeyError):
        return None
    if len(history):
        watch.verdict = judge(history.samples(), detector)
    return watch


def checkpoint_name(modelserver: str) -> str:
    return f"{modelserver}-memory-guard"


def checkpoint_config_map(owner: Owner, fleet: FleetWatch) -> dict[str, Any]:
    """The ConfigMap that holds a fleet's pod histories (owned by the ModelServer,
    so it goes when the fleet goes). Not labelled as the fleet's own objects: the
    reconciler neither renders nor prunes it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": checkpoint_name(owner.name),
            "namespace": owner.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/component": "memory-guard",
            },
            "ownerReferences": [owner.reference()],
        },
        "data": {pod: checkpoint_pod(watch) for pod, watch in sorted(fleet.pods.items())},
    }
