"""A labelled corpus of TF Serving memory traces, generated from seeds (deterministic).

Leaks: the field reports' fast leak (8 GB -> 32 GB in ten minutes), medium leaks, the slow
daily drift (2-3 GB -> 8-12 GB a day), leaks that start after hours, leaks under
sawtooth and under bursty load, and a leak going on under regular version pushes
(slow loads, flagged as loading). Healthy shapes: warm-up ramps that plateau,
version transitions (a step up while two versions are loaded, then down), a
model added (a step that stays), sawtooth, noisy flat load, a one-off spike, a
pod sitting flat at 90% of its limit, a cache warming for hours until it
saturates, slow loads of 2-5 GiB taking 4-30 minutes (new versions, a model added
by a config reload, three models added one after another; flagged as loading, as
the operator sees them from TF Serving's model states), a long warm-up once the
first traffic arrives, and a tightly sized pod swinging daily between 40% and 87%
of its limit.

Every family samples at its own interval, or at the one `corpus` is given (the
field reports' usual 10-60 s).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tfops.memory.detector import Sample

GiB = 2**30
MiB = 2**20


@dataclass(frozen=True)
class Trace:
    name: str
    family: str
    leak: bool
    samples: list[Sample]
    # when the working set reached the limit (the OOM kill); None for healthy traces
    oom_at: float | None

    @property
    def catchable(self) -> bool:
        """False for a leak whose OOM came between two samples from below 80% of
        the limit: no detector sees it coming."""
        if not self.leak or len(self.samples) < 2:
            return True
        before = self.samples[-2]
        return before.working_set >= 0.8 * before.limit


def _noise(rng: random.Random, value: float, sigma: float, burst_p: float, burst: float) -> float:
    value *= 1 + rng.gauss(0, sigma)
    if rng.random() < burst_p:
        value *= 1 + rng.uniform(0, burst)
    return max(value, 0.0)


def _trace(
    name: str,
    family: str,
    leak: bool,
    limit: float,
    step: float,
    duration: float,
    shape: Callable[[float], float],
    rng: random.Random,
    sigma: float = 0.01,
    burst_p: float = 0.02,
    burst: float = 0.1,
    loading: Callable[[float], bool] | None = None,
) -> Trace:
    samples, oom_at, t = [], None, step
    while t <= duration:
        value = _noise(rng, shape(t), sigma, burst_p, burst)
        flag = loading(t) if loading else False
        if value >= limit:
            oom_at = t  # the kernel kills the container: the trace ends
            samples.append(Sample(t, limit, limit, flag))
            break
        samples.append(Sample(t, value, limit, flag))
        t += step
    return Trace(name, family, leak, samples, oom_at)


def _load_ramp(t: float, target: float, seconds: float = 60.0) -> float:
    """Model load right after start: memory climbs to the loaded size."""
    return target * min(1.0, 0.3 + 0.7 * t / seconds)


@dataclass(frozen=True)
class Pushes:
    """A new version every `every` seconds (from the first period on), loading for
    `load` seconds beside the old one, then the old one unloading for 60 s."""

    every: float
    load: float
    size: float
    unload: float = 60.0

    def _phase(self, t: float) -> float | None:
        if t < self.every:
            return None
        return t % self.every

    def extra(self, t: float) -> float:
        phase = self._phase(t)
        if phase is None or phase >= self.load + self.unload:
            return 0.0
        if phase < self.load:
            return self.size * phase / self.load
        return self.size * (1 - (phase - self.load) / self.unload)

    def loading(self, t: float) -> bool:
        phase = self._phase(t)
        return phase is not None and phase < self.load + self.unload


@dataclass(frozen=True)
class Added:
    """Models added by config reloads: each grows by `size` over `load` seconds
    from `at`, and stays."""

    loads: tuple[tuple[float, float, float], ...]  # (at, load seconds, size)

    def extra(self, t: float) -> float:
        return sum(size * min(1.0, max(0.0, (t - at) / load)) for at, load, size in self.loads)

    def loading(self, t: float) -> bool:
        return any(at <= t < at + load for at, load, _ in self.loads)


def leak_traces(rng: random.Random, count: int, interval: float | None = None) -> Iterator[Trace]:
    def step(default: float) -> float:
        return interval or default

    for i in range(count):
        # The field reports' incident: a serving fleet at ~8 GB starts leaking ~50 MB per
        # request and reaches 32 GB in about ten minutes.
        base, limit = rng.uniform(6, 10) * GiB, rng.choice([24, 32]) * GiB
        start, slope = rng.uniform(600, 3600), rng.uniform(2.0, 3.0) * GiB / 60
        yield _trace(
            f"fast-{i}",
            "fast leak (8 -> 32 GB in 10 min)",
            True,
            limit,
            step(15),
            7200,
            lambda t, b=base, s=slope, t0=start: _load_ramp(t, b) + s * max(0, t - t0),
            rng,
        )
    for i in range(count):
        base, limit = rng.uniform(1.5, 3) * GiB, rng.choice([6, 8, 12]) * GiB
        slope = rng.uniform(15, 80) * MiB / 60
        yield _trace(
            f"medium-{i}",
            "medium leak",
            True,
            limit,
            step(15),
            12 * 3600,
            lambda t, b=base, s=slope: _load_ramp(t, b) + s * max(0, t - 60),
            rng,
        )
    for i in range(count):
        # The field reports' slow drift: 2-3 GB to 8-12 GB over a day.
        base, limit = rng.uniform(2, 3) * GiB, rng.choice([12, 14, 16]) * GiB
        slope = rng.uniform(5, 9) * GiB / 86400
        yield _trace(
            f"drift-{i}",
            "slow daily drift",
            True,
            limit,
            step(60),
            4 * 86400,
            lambda t, b=base, s=slope: _load_ramp(t, b, 120) + s * t,
            rng,
        )
    for i in range(count):
        base, limit = rng.uniform(2, 4) * GiB, rng.choice([8, 12]) * GiB
        start, slope = rng.uniform(2, 6) * 3600, rng.uniform(20, 100) * MiB / 60
        yield _trace(
            f"late-{i}",
            "leak starting after hours",
            True,
            limit,
            step(30),
            24 * 3600,
            lambda t, b=base, s=slope, t0=start: _load_ramp(t, b) + s * max(0, t - t0),
            rng,
        )
    for i in range(count):
        base, limit = rng.uniform(2, 4) * GiB, rng.choice([8, 12]) * GiB
        amplitude, period = rng.uniform(0.1, 0.25) * base, rng.uniform(120, 600)
        slope = rng.uniform(15, 60) * MiB / 60
        yield _trace(
            f"sawleak-{i}",
            "leak under sawtooth",
            True,
            limit,
            step(15),
            12 * 3600,
            lambda t, b=base, a=amplitude, p=period, s=slope: (
                _load_ramp(t, b) + a * ((t % p) / p) + s * max(0, t - 60)
            ),
            rng,
        )
    for i in range(count):
        base, limit = rng.uniform(2, 4) * GiB, rng.choice([8, 12]) * GiB
        slope = rng.uniform(20, 60) * MiB / 60
        yield _trace(
            f"burstleak-{i}",
            "leak under bursty load",
            True,
            limit,
            step(15),
            12 * 3600,
            lambda t, b=base, s=slope: _load_ramp(t, b) + s * max(0, t - 60),
            rng,
            sigma=0.03,
            burst_p=0.1,
            burst=0.25,
        )

    for i in range(count):
        limit = rng.choice([16, 24]) * GiB
        base, slope = rng.uniform(3, 5) * GiB, rng.uniform(20, 60) * MiB / 60
        pushes = Pushes(rng.uniform(90, 180) * 60, rng.uniform(4, 30) * 60, rng.uniform(2, 4) * GiB)
        yield _trace(
            f"pushleak-{i}",
            "leak under version pushes (slow loads)",
            True,
            limit,
            step(15),
            24 * 3600,
            lambda t, b=base, s=slope, p=pushes: _load_ramp(t, b) + p.extra(t) + s * max(0, t - 60),
            rng,
            loading=pushes.loading,
        )


def healthy_traces(
    rng: random.Random, count: int, interval: float | None = None
) -> Iterator[Trace]:
    def step(default: float) -> float:
        return interval or default

    hours = 6 * 3600
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        plateau, tau = rng.uniform(0.4, 0.75) * limit, rng.uniform(30, 300)
        yield _trace(
            f"warmup-{i}",
            "warm-up ramp that plateaus",
            False,
            limit,
            step(15),
            hours,
            lambda t, p=plateau, k=tau: p * (1 - 0.7 * math.exp(-t / k)),
            rng,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base, size = rng.uniform(0.35, 0.55) * limit, rng.uniform(0.1, 0.3) * limit
        every, hold = rng.uniform(1800, 5400), rng.uniform(60, 300)

        def transitions(
            t: float, b: float = base, s: float = size, e: float = every, h: float = hold
        ) -> float:
            # New version loaded next to the old one, then the old one unloaded.
            return _load_ramp(t, b) + (s if 0 < t % e < h and t > e else 0)

        yield _trace(
            f"transition-{i}",
            "version transitions",
            False,
            limit,
            step(15),
            hours,
            transitions,
            rng,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base, size, when = (
            rng.uniform(0.3, 0.5) * limit,
            rng.uniform(0.1, 0.25) * limit,
            rng.uniform(1800, 14400),
        )
        yield _trace(
            f"added-{i}",
            "model added (a step that stays)",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=base, s=size, w=when: _load_ramp(t, b) + (s if t > w else 0),
            rng,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base = rng.uniform(0.35, 0.55) * limit
        amplitude, period = rng.uniform(0.1, 0.3) * base, rng.uniform(120, 900)
        yield _trace(
            f"sawtooth-{i}",
            "sawtooth (caches, arenas)",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=base, a=amplitude, p=period: _load_ramp(t, b) + a * ((t % p) / p),
            rng,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base = rng.uniform(0.3, 0.6) * limit
        yield _trace(
            f"noisy-{i}",
            "noisy flat load",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=base: _load_ramp(t, b),
            rng,
            sigma=0.04,
            burst_p=0.15,
            burst=0.3,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base, spike, when, length = (
            rng.uniform(0.3, 0.5) * limit,
            rng.uniform(0.3, 0.5),
            rng.uniform(1800, 14400),
            rng.uniform(30, 120),
        )
        yield _trace(
            f"spike-{i}",
            "one-off spike",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=base, s=spike, w=when, n=length: (
                _load_ramp(t, b) * (1 + (s if w < t < w + n else 0))
            ),
            rng,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        level = rng.uniform(0.9, 0.93) * limit
        yield _trace(
            f"high-{i}",
            "flat at 90% of the limit",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=level: _load_ramp(t, b),
            rng,
            sigma=0.003,
            burst_p=0.0,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base, extent, tau = (
            rng.uniform(0.3, 0.45) * limit,
            rng.uniform(0.15, 0.3) * limit,
            rng.uniform(1800, 5400),
        )
        yield _trace(
            f"cache-{i}",
            "cache warming for hours, then saturating",
            False,
            limit,
            step(30),
            12 * 3600,
            lambda t, b=base, e=extent, k=tau: _load_ramp(t, b) + e * (1 - math.exp(-t / k)),
            rng,
        )
    for i in range(count):
        # The field reports' slow loads: 2-5 GiB restored over 4-30 minutes.
        limit = rng.choice([16, 24]) * GiB
        base = rng.uniform(0.2, 0.3) * limit
        scenario: Pushes | Added
        if i % 3 == 0:
            scenario = Pushes(
                rng.uniform(60, 120) * 60, rng.uniform(4, 30) * 60, rng.uniform(2, 5) * GiB
            )
        elif i % 3 == 1:  # one 5 GiB model added by a config reload
            scenario = Added(((rng.uniform(1800, 7200), rng.uniform(10, 30) * 60, 5 * GiB),))
        else:  # three models added one after another
            at, loads = rng.uniform(1800, 3600), []
            for _ in range(3):
                load = rng.uniform(4, 15) * 60
                loads.append((at, load, rng.uniform(2, 3) * GiB))
                at += load + rng.uniform(60, 600)
            scenario = Added(tuple(loads))
        yield _trace(
            f"slowload-{i}",
            "slow model loads (loading signal)",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=base, sc=scenario: _load_ramp(t, b) + sc.extra(t),
            rng,
            loading=scenario.loading,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        base, extent = rng.uniform(0.3, 0.45) * limit, rng.uniform(0.15, 0.3) * limit
        first, tau = rng.uniform(600, 3600), rng.uniform(300, 900)
        yield _trace(
            f"firsttraffic-{i}",
            "long warm-up once the first traffic arrives",
            False,
            limit,
            step(15),
            hours,
            lambda t, b=base, e=extent, f=first, k=tau: (
                _load_ramp(t, b) + (e * (1 - math.exp(-(t - f) / k)) if t > f else 0.0)
            ),
            rng,
        )
    for i in range(count):
        limit = rng.choice([8, 16]) * GiB
        phase = rng.uniform(0, 86400)
        yield _trace(
            f"diurnal-{i}",
            "tight daily swing (40% to 87%)",
            False,
            limit,
            step(60),
            3 * 86400,
            lambda t, lim=limit, p=phase: (
                lim * (0.635 + 0.235 * math.sin(2 * math.pi * (t - p) / 86400))
            ),
            rng,
            burst=0.05,
        )


def corpus(seed: int = 7, per_family: int = 12, interval: float | None = None) -> list[Trace]:
    """The labelled traces; `interval`: every family sampled this often."""
    rng = random.Random(seed)
    return [*leak_traces(rng, per_family, interval), *healthy_traces(rng, per_family, interval)]
