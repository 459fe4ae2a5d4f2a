"""Leak detection from a pod's working-set samples. Pure and deterministic.

Healthy TF Serving memory is not flat: it ramps while models load and warm up,
steps up when a new version loads (and down when the old one unloads), saws up
and down as caches and allocator arenas fill and release, and jitters with
bursty load. A leak is the one shape that keeps climbing underneath all that.
So, for each of a few window lengths:

1. Lower envelope: split the window into equal buckets and keep each bucket's
   minimum. Sawtooth peaks, load bursts and one-off spikes sit above the floor;
   a leak raises the floor itself.
2. Theil-Sen slope of the envelope (median of pairwise slopes): robust to the
   odd outlying bucket, unlike least squares (Prometheus' predict_linear).
3. Mann-Kendall test on the envelope: the rise must be a significant monotonic
   trend, not noise.
4. Consistency: the envelope must rise in every third of the window, at a rate
   comparable to the whole. A step (new version, new model) rises in one third
   only; a warm-up ramp that flattens has a flat last third.
5. Memory is not given back: looking back several windows, the floor must never
   have dropped by more than half the window's rise (a cache's floor does).
6. Relevance: a window speaks only for leaks that reach the limit within a few
   window lengths, and only once enough history lies past the warm-up.

A window that passes all six is a leak; its slope projects the time until the
limit. Every threshold is relative (fractions, time), none is in bytes, so
scaling a trace's units does not change a verdict.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass

from tfops.quantity import mib_per_minute


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float  # since the pod started
    working_set: float  # bytes
    limit: float  # bytes; the container's memory limit


@dataclass(frozen=True)
class DetectorSettings:
    # Window lengths examined, shortest first; each needs to be filled with data.
    windows_seconds: tuple[float, ...] = (150.0, 300.0, 900.0, 2700.0, 7200.0, 21600.0)
    # A window only speaks for leaks that would reach the limit within this many
    # window lengths: a few minutes of rise are evidence of an imminent OOM, not
    # of a slow leak (a sawtooth tooth rises for minutes too).
    urgency: float = 6.0
    # Samples this soon after the pod started are the model load and warm-up.
    warmup_seconds: float = 300.0
    buckets: int = 15
    # One-sided Mann-Kendall at p < 0.01.
    significance_z: float = 2.33
    # Each third of a window must rise at least this fraction of the window's slope,
    # and the last third at least this fraction of the first (a ramp decelerates).
    consistency: float = 0.3
    deceleration: float = 0.5
    # Looking back this many window lengths, the floor must not have dropped by
    # more than this fraction of the window's rise: leaked memory is never given
    # back, a cache's or an arena's is (sawtooth).
    lookback: float = 4.0
    release_tolerance: float = 0.5
    # Growth that would need longer than this to reach the limit is not a leak
    # worth a verdict (slow enough to be a cache still warming).
    horizon_seconds: float = 7 * 24 * 3600.0
    # Two OOM kills whose growth rates agree within this factor make a leak.
    oom_slope_agreement: float = 1.5


@dataclass(frozen=True)
class Verdict:
    seconds: float
    leaking: bool
    # bytes per second of the envelope's rise (0 when not leaking)
    slope: float
    # projected seconds until the working set reaches the limit; None when not leaking
    seconds_to_limit: float | None
    usage_fraction: float
    # window (seconds) that showed the leak, or why none did
    reason: str


def keep_interval_floor(kept: MutableSequence[Sample], sample: Sample, interval: float) -> None:
    """Append `sample`, or let it replace the last kept one when both fall in the
    same interval and it is lower: each interval's lowest sample, which is all the
    envelope of a long window looks at."""
    last = kept[-1] if kept else None
    if last is None or last.seconds // interval != sample.seconds // interval:
        kept.append(sample)
    elif sample.working_set < last.working_set:
        kept[-1] = sample


class History:
    """A pod's samples as the detector needs them, in bounded memory: raw for the
    last `raw_seconds`, older ones reduced to each minute's lowest sample (all the
    envelope of a window of 15 minutes or more looks at), nothing older than the
    longest window."""

    def __init__(
        self, settings: DetectorSettings, raw_seconds: float = 3600.0, coarse_seconds: float = 60.0
    ) -> None:
        self.keep = max(settings.windows_seconds)
        self.raw_seconds = raw_seconds
        self.coarse_seconds = coarse_seconds
        self.coarse: deque[Sample] = deque()
        self.raw: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        self.raw.append(sample)
        while self.raw and self.raw[0].seconds < sample.seconds - self.raw_seconds:
            keep_interval_floor(self.coarse, self.raw.popleft(), self.coarse_seconds)
        while self.coarse and self.coarse[0].seconds < sample.seconds - self.keep:
            self.coarse.popleft()

    def samples(self) -> list[Sample]:
        return [*self.coarse, *self.raw]

    def __len__(self) -> int:
        return len(self.coarse) + len(self.raw)


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> float:
    slopes = sorted(
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    )
    if not slopes:
        return 0.0
    middle = len(slopes) // 2
    return slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2


def mann_kendall_z(ys: Sequence[float]) -> float:
    """Z score of the Mann-Kendall S statistic (no tie correction: envelopes of
    real measurements rarely tie, and ties only make the test more cautious)."""
    n = len(ys)
    if n < 3:
        return 0.0
    s = sum((ys[j] > ys[i]) - (ys[j] < ys[i]) for i in range(n) for j in range(i + 1, n))
    variance = n * (n - 1) * (2 * n + 5) / 18
    if s > 0:
        return (s - 1) / math.sqrt(variance)
    if s < 0:
        return (s + 1) / math.sqrt(variance)
    return 0.0


def lower_envelope(
    samples: Sequence[Sample], start: float, end: float, buckets: int
) -> tuple[list[float], list[float]]:
    """(bucket midpoints, bucket minima) for the non-empty buckets of [start, end]."""
    width = (end - start) / buckets
    minima: list[float | None] = [None] * buckets
    for sample in samples:
        if sample.seconds < start:
            continue
        index = min(buckets - 1, int((sample.seconds - start) / width))
        current = minima[index]
        if current is None or sample.working_set < current:
            minima[index] = sample.working_set
    xs, ys = [], []
    for index, value in enumerate(minima):
        if value is not None:
            xs.append(start + (index + 0.5) * width)
            ys.append(value)
    return xs, ys


def _window_verdict(
    samples: Sequence[Sample], window: float, settings: DetectorSettings
) -> tuple[bool, float, str]:
    now = samples[-1].seconds
    start = now - window
    # The window and one more before it must lie past the warm-up: a slow warm-up
    # still rising just after the grace looks like a leak within one window.
    if start - window < settings.warmup_seconds or (
        samples[0].seconds > start + window / settings.buckets
    ):
        return False, 0.0, f"{window:.0f}s window not filled yet"
    xs, ys = lower_envelope(samples, start, now, settings.buckets)
    if len(ys) < settings.buckets * 2 // 3:
        return False, 0.0, f"{window:.0f}s window too sparse"
    slope = theil_sen(xs, ys)
    if slope <= 0:
        return False, 0.0, f"{window:.0f}s floor not rising"
    limit = samples[-1].limit
    eta = (limit - ys[-1]) / slope
    if eta > min(settings.horizon_seconds, settings.urgency * window):
        return False, 0.0, f"{window:.0f}s rise too slow for this window"
    if mann_kendall_z(ys) < settings.significance_z:
        return False, 0.0, f"{window:.0f}s rise not significant"
    third = len(xs) // 3
    slopes = [
        theil_sen(
            xs[part * third : len(xs) if part == 2 else (part + 1) * third],
            ys[part * third : len(xs) if part == 2 else (part + 1) * third],
        )
        for part in range(3)
    ]
    if min(slopes) < settings.consistency * slope:
        return False, 0.0, f"{window:.0f}s rise not sustained (a step)"
    if slopes[2] < settings.deceleration * slopes[0]:
        return False, 0.0, f"{window:.0f}s rise slowing down (a ramp)"
    if _largest_release(samples, window, settings) > settings.release_tolerance * slope * window:
        return False, 0.0, f"{window:.0f}s memory was given back (sawtooth)"
    return True, slope, f"{window:.0f}s window"


def _largest_release(samples: Sequence[Sample], window: float, settings: DetectorSettings) -> float:
    """The largest drop of the floor (peak, then a later trough) over the lookback,
    at the window's own bucket width."""
    now = samples[-1].seconds
    start = max(now - settings.lookback * window, settings.warmup_seconds, samples[0].seconds)
    width = window / settings.buckets
    _, floor = lower_envelope(samples, start, now, max(1, round((now - start) / width)))
    peak, release = float("-inf"), 0.0
    for value in floor:
        peak = max(peak, value)
        release = max(release, peak - value)
    return release


def judge(samples: Sequence[Sample], settings: DetectorSettings | None = None) -> Verdict:
    """The verdict at the time of the last sample, from the samples before it."""
    settings = settings or DetectorSettings()
    last = samples[-1]
    usage = last.working_set / last.limit if last.limit else 0.0
    reasons = []
    for window in settings.windows_seconds:
        leaking, slope, reason = _window_verdict(samples, window, settings)
        if leaking:
            # Project from the envelope's line at "now", not from a peak.
            xs, ys = lower_envelope(samples, last.seconds - window, last.seconds, settings.buckets)
            floor_now = ys[-1] + slope * (last.seconds - xs[-1])
            remaining = max(0.0, last.limit - max(floor_now, 0.0))
            return Verdict(last.seconds, True, slope, remaining / slope, usage, reason)
        reasons.append(reason)
    return Verdict(last.seconds, False, 0.0, None, usage, reasons[0] if reasons else "no data")


def growth_slope(
    samples: Sequence[Sample], settings: DetectorSettings, span: float = 900.0
) -> float:
    """The floor's Theil-Sen slope over the last `span` seconds, significant or not:
    how fast a process was growing when it was OOM-killed."""
    if len(samples) < 2:
        return 0.0
    end = samples[-1].seconds
    start = max(end - span, samples[0].seconds)
    if end <= start:
        return 0.0
    xs, ys = lower_envelope(samples, start, end, settings.buckets)
    return theil_sen(xs, ys) if len(ys) >= 3 else 0.0


def repeated_oom_verdict(
    last: Sample, oom_slopes: Sequence[float], settings: DetectorSettings
) -> Verdict | None:
    """A process OOM-killed twice while growing at about the same rate is leaking
    that way again: no need to wait for a window to fill. None without that evidence
    (or during the new process's warm-up)."""
    if len(oom_slopes) < 2 or last.seconds < settings.warmup_seconds:
        return None
    before, latest = oom_slopes[-2:]
    if min(before, latest) <= 0 or max(before, latest) > settings.oom_slope_agreement * min(
        before, latest
    ):
        return None
    slope = (before + latest) / 2
    usage = last.working_set / last.limit if last.limit else 0.0
    remaining = max(0.0, last.limit - last.working_set)
    return Verdict(
        last.seconds,
        True,
        slope,
        remaining / slope,
        usage,
        f"OOM-killed {len(oom_slopes)} times while growing about "
        f"{mib_per_minute(slope):.1f} MiB/min",
    )
