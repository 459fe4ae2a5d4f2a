"""Leak detection from a pod's working-set samples. Pure and deterministic.

Healthy TF Serving memory is not flat: it ramps while models load and warm up,
steps up when a new version loads (and down when the old one unloads), saws up
and down as caches and allocator arenas fill and release, and jitters with
bursty load. A leak is the one shape that keeps climbing underneath all that.
So, for each of a few window lengths:

1. Lower envelope: split the window into equal buckets and keep each bucket's
   minimum. Sawtooth peaks, load bursts and one-off spikes sit above the floor;
   a leak raises the floor itself. The buckets follow the sampling interval
   (inferred from the samples): at most 15, at least one sample each, and a
   window shorter than five samples is not examined. Sawtooth teeth longer than
   a bucket lift the envelope along their rising edges; a window whose envelope
   sees memory given back is judged again on five buckets, each wide enough to
   hold a trough (teeth up to 10 minutes).
2. Theil-Sen slope of the envelope (median of pairwise slopes): robust to the
   odd outlying bucket, unlike least squares (Prometheus' predict_linear).
3. Mann-Kendall test on the envelope: the rise must be a significant monotonic
   trend, not noise (p < 0.01, exact for short envelopes: five strictly rising
   points are p = 1/120, which the normal approximation cannot see).
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

What the operator knows comes first: while a model version loads or unloads
(TF Serving's LOADING and UNLOADING states, a promotion, a models.config change
the pod has not applied yet) growth is not evidence. Those samples are left out,
and the level the load settled at becomes the new floor (LoadingFilter): a leak
going on under version pushes keeps its slope across them.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import math
import statistics
from collections import deque
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass, field

from tfops.quantity import mib_per_minute


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float  # since the pod started
    working_set: float  # bytes
    limit: float  # bytes; the container's memory limit
    # A model version on the pod is loading or unloading (or a config change or a
    # promotion step is under way): growth now is not a leak.
    loading: bool = False


@dataclass(frozen=True)
class DetectorSettings:
    # Window lengths examined, shortest first; each needs to be filled with data.
    windows_seconds: tuple[float, ...] = (150.0, 300.0, 900.0, 1800.0, 2700.0, 7200.0, 21600.0)
    # A window only speaks for leaks that would reach the limit within this many
    # window lengths: a few minutes of rise are evidence of an imminent OOM, not
    # of a slow leak (a sawtooth tooth rises for minutes too).
    urgency: float = 6.0
    # Samples this soon after the pod started are the model load and warm-up.
    warmup_seconds: float = 300.0
    # A window speaks once this many window lengths of history lie before it, past
    # the warm-up: a slow warm-up still rising just after the grace looks like a
    # leak within one window (half a window: a 30-minute window speaks from 45
    # minutes past the warm-up on, soon enough for a leak under heavy bursts that
    # reaches the limit within the hour).
    history_before_window: float = 0.5
    # At most this many buckets per window, never more than its samples, and a
    # window with fewer than min_points samples is not examined.
    buckets: int = 15
    min_points: int = 5
    # One-sided Mann-Kendall at p < 0.01.
    significance: float = 0.01
    # Sawtooth teeth up to this long (caches, allocator arenas) are looked through
    # by a coarser envelope, one trough per bucket, when a window's fine one sees
    # memory given back.
    tooth_max_seconds: float = 600.0
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
    # After a load ends, its level is read from the lowest sample this long (and
    # at least two samples) before the filter lets samples through again.
    settle_seconds: float = 60.0
    # A leak verdict this recent still counts once a load begins (see LoadingFilter);
    # as long as the restart policy remembers one (PolicySettings.forget_seconds).
    leak_memory_seconds: float = 600.0
    # A window's finding of no leak stands for this share of the window, at most
    # rejudge_max_seconds: a 15-minute window is judged every 30 s, a 6-hour one
    # every 5 minutes, the shortest at every sample. Judging each window at every
    # sample made a 10^6-row replay take three minutes; reusing a finding much
    # longer hides leaks under sawtooth and bursts, which show in some verdicts
    # only (the policy forgets a leak after 10 minutes without a verdict).
    rejudge_fraction: float = 1 / 30
    rejudge_max_seconds: float = 300.0

    def rejudge_after(self, window: float) -> float:
        return min(self.rejudge_fraction * window, self.rejudge_max_seconds)


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


def keep_interval_peak(kept: MutableSequence[Sample], sample: Sample, interval: float) -> None:
    """As keep_interval_floor, for each interval's highest sample."""
    last = kept[-1] if kept else None
    if last is None or last.seconds // interval != sample.seconds // interval:
        kept.append(sample)
    elif sample.working_set > last.working_set:
        kept[-1] = sample


class History:
    """A pod's samples as the detector needs them, in bounded memory: raw for the
    last `raw_seconds`, older ones reduced to each minute's lowest sample (all the
    envelope of a window of 15 minutes or more looks at) up to the longest window,
    and to each five minutes' lowest beyond, as far back as the longest window's
    release check looks (a day: memory a daily cycle gave back yesterday)."""

    def __init__(
        self, settings: DetectorSettings, raw_seconds: float = 3600.0, coarse_seconds: float = 60.0
    ) -> None:
        self.keep = max(settings.windows_seconds)
        self.keep_archive = settings.lookback * self.keep
        self.raw_seconds = raw_seconds
        self.coarse_seconds = coarse_seconds
        self.archive_seconds = 5 * coarse_seconds
        self.archive: deque[Sample] = deque()
        self.coarse: deque[Sample] = deque()
        self.raw: deque[Sample] = deque()
        # Each minute's highest sample too, as far back as the minute floors: how far
        # above its floor the working set reaches (bursts, sawtooth teeth).
        self.coarse_peaks: deque[Sample] = deque()
        # Windows' recent findings of no leak (see judge).
        self.recent: dict[float, tuple[float, str]] = {}

    def add(self, sample: Sample) -> bool:
        """Keep a sample; False (and nothing kept) when it is not newer than the
        last one: a repeated or out-of-order reading says nothing new."""
        if self.raw and sample.seconds <= self.raw[-1].seconds:
            return False
        self.raw.append(sample)
        while self.raw and self.raw[0].seconds < sample.seconds - self.raw_seconds:
            old = self.raw.popleft()
            keep_interval_floor(self.coarse, old, self.coarse_seconds)
            keep_interval_peak(self.coarse_peaks, old, self.coarse_seconds)
        while self.coarse and self.coarse[0].seconds < sample.seconds - self.keep:
            keep_interval_floor(self.archive, self.coarse.popleft(), self.archive_seconds)
        while self.coarse_peaks and self.coarse_peaks[0].seconds < sample.seconds - self.keep:
            self.coarse_peaks.popleft()
        while self.archive and self.archive[0].seconds < sample.seconds - self.keep_archive:
            self.archive.popleft()
        return True

    def samples(self) -> list[Sample]:
        return [*self.archive, *self.coarse, *self.raw]

    def peaks(self) -> list[Sample]:
        """Samples that bound the working set from above: each older minute's
        highest, then every raw sample."""
        return [*self.coarse_peaks, *self.raw]

    def __len__(self) -> int:
        return len(self.archive) + len(self.coarse) + len(self.raw)


@dataclass
class LoadingFilter:
    """Leaves out the samples of a model load (and of its settling) and re-bases
    what follows on the level the load settled at: the growth a load brings is
    folded into an offset taken off every later sample and its limit (so the
    headroom, and with it the projected time to the limit, is unchanged). A leak
    keeps its slope across any number of loads; only the growth during the loads
    themselves is given up. The time they took is taken out too: what follows is
    moved back by it, so the history runs on without a gap and its windows stay
    dense however often versions are pushed (a leak under a push every few
    minutes is still seen; with the gaps, no window would hold enough samples)."""

    settings: DetectorSettings
    offset: float = 0.0
    # Seconds left out by loads so far (each load's gap less one sampling step).
    skipped: float = 0.0
    # The floor just before the load, and the lowest level since it ended.
    before: float | None = None
    after: float | None = None
    ended_at: float | None = None
    settled_samples: int = 0
    recent: deque[Sample] = field(default_factory=deque)
    # The newest sample seen (kept or left out): older or repeated ones say nothing new.
    last_seconds: float = float("-inf")
    # The slope of a leak found before a load began (0: none): a leaking pod that
    # loads a new version can reach its limit during the load, so the leak is still
    # projected, from the working set as measured. A leak verdict counts for
    # DetectorSettings.leak_memory_seconds: a leak under bursts or sawtooth shows
    # in some verdicts only, and the one before the load need not be one of them.
    leak_slope: float = 0.0
    leak_seen_at: float = float("-inf")
    # (seconds, working set) of the load's first sample: how fast the load itself
    # grows, which brings a leaking pod's OOM nearer than its leak alone.
    load_began: tuple[float, float] | None = None

    def growth_during_load(self, sample: Sample) -> float:
        """Bytes per second the working set has grown since the load began (0 before
        a second load sample)."""
        if self.load_began is None or sample.seconds <= self.load_began[0]:
            return 0.0
        began, level = self.load_began
        return max(0.0, (sample.working_set - level) / (sample.seconds - began))

    def admit(self, sample: Sample) -> Sample | None:
        """The sample as the detector should see it; None while a load is under way
        or settling."""
        if sample.loading:
            if self.before is None:
                self.before = min((s.working_set for s in self.recent), default=sample.working_set)
                self.load_began = (sample.seconds, sample.working_set)
            self.after = self.ended_at = None
            self.settled_samples = 0
            return None
        if self.before is not None:
            if self.ended_at is None:
                self.ended_at = sample.seconds
            self.after = (
                sample.working_set if self.after is None else min(self.after, sample.working_set)
            )
            self.settled_samples += 1
            if (
                sample.seconds - self.ended_at < self.settings.settle_seconds
                or self.settled_samples < 2
            ):
                return None
            self.offset += self.after - self.before
            self.before = self.after = self.ended_at = self.load_began = None
            if self.recent:
                last = self.recent[-1].seconds
                step = last - self.recent[-2].seconds if len(self.recent) > 1 else 0.0
                if step > 0:
                    self.skipped += max(0.0, sample.seconds - last - step)
        self.recent.append(sample)
        while (
            self.recent and self.recent[0].seconds < sample.seconds - self.settings.settle_seconds
        ):
            self.recent.popleft()
        if not self.offset and not self.skipped:
            return sample
        return Sample(
            sample.seconds - self.skipped,
            sample.working_set - self.offset,
            sample.limit - self.offset,
        )


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The median of the slopes between every two points (points at the same x
    give none)."""
    slopes = [
        (y2 - y1) / (x2 - x1)
        for (x1, y1), (x2, y2) in itertools.combinations(zip(xs, ys, strict=True), 2)
        if x2 != x1
    ]
    if not slopes:
        return 0.0
    slopes.sort()
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


# Up to this many points the Mann-Kendall p-value is exact; beyond, the normal
# approximation is close.
EXACT_POINTS = 40


@functools.cache
def _inversions_cdf(n: int) -> tuple[float, ...]:
    """P(a random permutation of n has at most k inversions), by k (Mahonian numbers)."""
    counts = [1]
    for m in range(2, n + 1):
        # Placing the m-th element adds 0..m-1 inversions.
        grown = [0] * (len(counts) + m - 1)
        running = 0
        for k in range(len(grown)):
            running += counts[k] if k < len(counts) else 0
            if k - m >= 0:
                running -= counts[k - m]
            grown[k] = running
        counts = grown
    total, running, cdf = sum(counts), 0, []
    for count in counts:
        running += count
        cdf.append(running / total)
    return tuple(cdf)


def mann_kendall_p(ys: Sequence[float]) -> float:
    """One-sided p-value of a rising trend: the chance that values in random order
    show at least this much agreement. Exact (over permutations) for short series;
    ties count for neither side, which only makes the test more cautious."""
    n = len(ys)
    if n < 3:
        return 1.0
    s = sum((ys[j] > ys[i]) - (ys[j] < ys[i]) for i in range(n) for j in range(i + 1, n))
    if n <= EXACT_POINTS:
        pairs = n * (n - 1) // 2
        # S >= s means at most (pairs - s) / 2 inversions.
        return _inversions_cdf(n)[math.floor((pairs - s) / 2)]
    return 0.5 * math.erfc(mann_kendall_z(ys) / math.sqrt(2))


def sampling_interval(samples: Sequence[Sample], last: int = 16) -> float:
    """The typical time between recent samples (their median gap)."""
    tail = samples[-(last + 1) :]
    gaps = [b.seconds - a.seconds for a, b in itertools.pairwise(tail)]
    return statistics.median(gaps) if gaps else 0.0


def window_buckets(window: float, interval: float, settings: DetectorSettings) -> int:
    """How many buckets a window's envelope has at this sampling interval: one
    sample or more each, never over the cap."""
    samples = math.floor(window / interval) if interval > 0 else 0
    return min(settings.buckets, samples)


def lower_envelope(
    samples: Sequence[Sample], start: float, end: float, buckets: int
) -> tuple[list[float], list[float]]:
    """(bucket midpoints, bucket minima) for the non-empty buckets of [start, end]
    (the samples in time order)."""
    width = (end - start) / buckets
    scale, last = buckets / (end - start), buckets - 1
    inf = math.inf
    minima = [inf] * buckets
    first = bisect.bisect_left(samples, start, key=lambda sample: sample.seconds)
    # The detector's hot loop: comparisons, not min() calls (a third of its time).
    for index in range(first, len(samples)):
        sample = samples[index]
        bucket = int((sample.seconds - start) * scale)
        if bucket > last:  # noqa: PLR1730
            bucket = last
        if sample.working_set < minima[bucket]:  # noqa: PLR1730
            minima[bucket] = sample.working_set
    xs, ys = [], []
    for index, value in enumerate(minima):
        if value != inf:
            xs.append(start + (index + 0.5) * width)
            ys.append(value)
    return xs, ys


SAWTOOTH = "memory was given back (sawtooth)"


def _window_verdict(
    samples: Sequence[Sample],
    window: float,
    interval: float,
    settings: DetectorSettings,
    buckets: int | None = None,
) -> tuple[bool, float, str, float]:
    """(leaking, slope, reason, pace) of one window, its envelope in `buckets`
    buckets (by default as many as the sampling interval allows, at most
    DetectorSettings.buckets)."""
    now = samples[-1].seconds
    start = now - window
    if start - settings.history_before_window * window < settings.warmup_seconds or (
        samples[0].seconds > start + window / settings.buckets
    ):
        return False, 0.0, f"{window:.0f}s window not filled yet", 0.0
    if window_buckets(window, interval, settings) < settings.min_points:
        return False, 0.0, f"{window:.0f}s window shorter than {settings.min_points} samples", 0.0
    buckets = buckets or window_buckets(window, interval, settings)
    xs, ys = lower_envelope(samples, start, now, buckets)
    if len(ys) < max(settings.min_points, buckets * 2 // 3):
        return False, 0.0, f"{window:.0f}s window too sparse", 0.0
    slope = theil_sen(xs, ys)
    if slope <= 0:
        return False, 0.0, f"{window:.0f}s floor not rising", 0.0
    limit = samples[-1].limit
    eta = (limit - ys[-1]) / slope
    if eta > min(settings.horizon_seconds, settings.urgency * window):
        return False, 0.0, f"{window:.0f}s rise too slow for this window", 0.0
    if mann_kendall_p(ys) >= settings.significance:
        return False, 0.0, f"{window:.0f}s rise not significant", 0.0
    # Thirds that share their end points, so each has two points or more.
    n = len(xs)
    bounds = (0, n // 3, 2 * n // 3, n - 1)
    slopes = [
        theil_sen(xs[bounds[part] : bounds[part + 1] + 1], ys[bounds[part] : bounds[part + 1] + 1])
        for part in range(3)
    ]
    if min(slopes) < settings.consistency * slope:
        return False, 0.0, f"{window:.0f}s rise not sustained (a step)", 0.0
    if slopes[2] < settings.deceleration * max(slopes[0], slopes[1]):
        return False, 0.0, f"{window:.0f}s rise slowing down (a ramp)", 0.0
    if (
        _largest_release(samples, window, buckets, settings)
        > settings.release_tolerance * slope * window
    ):
        return False, 0.0, f"{window:.0f}s {SAWTOOTH}", 0.0
    # The pace now: the last third's, when the rise is slowing (a daily swing nearing
    # its top), never below the slowing the check above allows.
    pace = min(slope, max(slopes[2], settings.deceleration * slope))
    return True, slope, f"{window:.0f}s window", pace


def _largest_release(
    samples: Sequence[Sample], window: float, buckets: int, settings: DetectorSettings
) -> float:
    """The largest drop of the floor (peak, then a later trough) over the lookback,
    at the window's own bucket width."""
    now = samples[-1].seconds
    start = max(now - settings.lookback * window, settings.warmup_seconds, samples[0].seconds)
    width = window / buckets
    _, floor = lower_envelope(samples, start, now, max(1, round((now - start) / width)))
    peak, release = float("-inf"), 0.0
    for value in floor:
        peak = max(peak, value)
        release = max(release, peak - value)
    return release


def judge(
    samples: Sequence[Sample],
    settings: DetectorSettings | None = None,
    peaks: Sequence[Sample] | None = None,
    recent: dict[float, tuple[float, str]] | None = None,
) -> Verdict:
    """The verdict at the time of the last sample, from the samples before it;
    `peaks`: what bounds them from above when the samples are reduced to floors
    (History.peaks), for how far above its floor the working set reaches.
    `recent`: per window, when it last found no leak and why; such a finding is
    reused for a while (DetectorSettings.rejudge_fraction), not judged again at
    every sample."""
    settings = settings or DetectorSettings()
    last = samples[-1]
    usage = last.working_set / last.limit if last.limit else 0.0
    interval = sampling_interval(samples)
    reasons = []
    for window in settings.windows_seconds:
        known = recent.get(window) if recent is not None else None
        if known is not None and last.seconds - known[0] < settings.rejudge_after(window):
            reasons.append(known[1])
            continue
        buckets = window_buckets(window, interval, settings)
        leaking, slope, reason, pace = _window_verdict(samples, window, interval, settings)
        if (
            not leaking
            and reason.endswith(SAWTOOTH)
            and settings.min_points < buckets
            and window / buckets >= 2 * interval
            and window / settings.min_points <= settings.tooth_max_seconds
        ):
            # Sawtooth teeth longer than a bucket put their rising edges into the
            # envelope; the fewest buckets the tests allow are each wide enough to
            # hold a trough, whose floor a leak still raises. Only when the fine
            # buckets hold two samples or more: with one each, the "envelope" is the
            # samples themselves and a burst passing looks like memory given back.
            coarse = _window_verdict(samples, window, interval, settings, settings.min_points)
            if coarse[0]:
                buckets = settings.min_points
                leaking, slope, pace = coarse[0], coarse[1], coarse[3]
                reason = f"{window:.0f}s window, {buckets} buckets"
        if recent is not None:
            if leaking:
                recent.pop(window, None)
            else:
                recent[window] = (last.seconds, reason)
        if leaking:
            # The envelope's line at "now" (not a peak), and how far above that line
            # the window's samples reached (sawtooth teeth, bursts): the kernel kills
            # at a peak, so the OOM comes when floor plus excursion meets the limit.
            start = last.seconds - window
            xs, ys = lower_envelope(samples, start, last.seconds, buckets)
            floor_now = ys[-1] + slope * (last.seconds - xs[-1])
            highs = samples if peaks is None else peaks
            first = bisect.bisect_left(highs, start, key=lambda sample: sample.seconds)
            excursion = max(
                (
                    s.working_set - (floor_now - slope * (last.seconds - s.seconds))
                    for s in highs[first:]
                ),
                default=0.0,
            )
            remaining = max(0.0, last.limit - max(floor_now, 0.0) - max(excursion, 0.0))
            return Verdict(last.seconds, True, slope, remaining / pace, usage, reason)
        reasons.append(reason)
    return Verdict(last.seconds, False, 0.0, None, usage, reasons[0] if reasons else "no data")


def observe(
    sample: Sample, history: History, loading: LoadingFilter, settings: DetectorSettings
) -> Verdict | None:
    """One sample through the loading filter into the history, judged: the verdict
    at its time (usage as measured, whatever the re-basing); None when the sample is
    not newer than the last one seen (a repeated or out-of-order reading)."""
    if sample.seconds <= loading.last_seconds:
        return None
    loading.last_seconds = sample.seconds
    usage = sample.working_set / sample.limit if sample.limit else 0.0
    admitted = loading.admit(sample)
    if admitted is None:
        if loading.leak_slope > 0:
            # The leak goes on under the load, and the load grows too: whichever is
            # faster brings the OOM.
            pace = max(loading.leak_slope, loading.growth_during_load(sample))
            remaining = max(0.0, sample.limit - sample.working_set)
            return Verdict(
                sample.seconds,
                True,
                loading.leak_slope,
                remaining / pace,
                usage,
                "leaking before this model load; projected from the working set now "
                "and the faster of the leak and the load",
            )
        return Verdict(
            sample.seconds, False, 0.0, None, usage, "a model is loading: growth is not evidence"
        )
    history.add(admitted)
    verdict = judge(history.samples(), settings, history.peaks(), history.recent)
    if verdict.leaking:
        loading.leak_slope, loading.leak_seen_at = verdict.slope, sample.seconds
    elif sample.seconds - loading.leak_seen_at > settings.leak_memory_seconds:
        loading.leak_slope = 0.0
    if not loading.offset and not loading.skipped:
        return verdict
    return dataclasses.replace(verdict, seconds=sample.seconds, usage_fraction=usage)


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
