"""Replay a recorded trace through the detector and restart policy (`tfops guard replay`),
streaming: a trace of any length is read, judged and dropped sample by sample, in the
memory the live guard keeps per pod.

A trace is CSV with the header `timestamp_seconds,working_set_bytes,limit_bytes` and,
optionally, a fourth column `loading`: 1 while a model version on the pod is loading
or unloading (TF Serving's LOADING/UNLOADING states), 0 or empty otherwise."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from tfops.memory.detector import (
    DetectorSettings,
    History,
    LoadingFilter,
    Sample,
    Verdict,
    observe,
)
from tfops.memory.policy import LeakTracker, PolicySettings

HEADER = ("timestamp_seconds", "working_set_bytes", "limit_bytes")
LOADING_COLUMN = "loading"


class TraceError(ValueError):
    pass


def read_trace(handle: TextIO, name: str = "trace") -> Iterator[Sample]:
    """The samples of a trace, one at a time; a bad line raises TraceError naming
    file:line when it is reached."""
    reader = csv.reader(handle)
    header = next(reader, None)
    columns = tuple(h.strip() for h in header) if header else ()
    if columns not in (HEADER, (*HEADER, LOADING_COLUMN)):
        raise TraceError(
            f"{name}: the first line must be {','.join(HEADER)} (optionally "
            f",{LOADING_COLUMN}), not {header}"
        )
    width = len(columns)
    count = 0
    for line, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise TraceError(f"{name}:{line}: expected {width} values, got {row}")
        try:
            seconds, working_set, limit = (float(value) for value in row[:3])
        except ValueError as error:
            raise TraceError(f"{name}:{line}: expected numbers, got {row}") from error
        if not all(math.isfinite(v) for v in (seconds, working_set, limit)):
            raise TraceError(f"{name}:{line}: NaN and infinity are not measurements: {row}")
        if limit <= 0 or working_set < 0 or seconds < 0:
            raise TraceError(f"{name}:{line}: need timestamp >= 0, working_set >= 0, limit > 0")
        loading = False
        if width == 4:
            flag = row[3].strip()
            if flag not in ("", "0", "1"):
                raise TraceError(f"{name}:{line}: {LOADING_COLUMN} must be 1, 0 or empty")
            loading = flag == "1"
        count += 1
        yield Sample(seconds, working_set, limit, loading)
    if not count:
        raise TraceError(f"{name}: no samples")


def write_trace(path: Path, samples: Iterable[Sample]) -> None:
    """A trace file; with the loading column when any sample is loading."""
    samples = list(samples)
    with_loading = any(s.loading for s in samples)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*HEADER, LOADING_COLUMN) if with_loading else HEADER)
        for sample in samples:
            row = [f"{sample.seconds:g}", f"{sample.working_set:.0f}", f"{sample.limit:.0f}"]
            writer.writerow([*row, int(sample.loading)] if with_loading else row)


@dataclass(frozen=True)
class Step:
    verdict: Verdict
    restart: bool


class Replayer:
    """One pod as the live guard sees it: the same loading filter, bounded history,
    detector and restart policy, fed one sample at a time."""

    def __init__(
        self, detector: DetectorSettings | None = None, policy: PolicySettings | None = None
    ) -> None:
        self.detector = detector or DetectorSettings()
        self.history = History(self.detector)
        self.loading = LoadingFilter(self.detector)
        self.tracker = LeakTracker(policy or PolicySettings())
        self.samples = 0
        # Not newer than the sample before: the live guard ignores such readings too.
        self.ignored = 0

    def step(self, sample: Sample) -> Step | None:
        self.samples += 1
        verdict = observe(sample, self.history, self.loading, self.detector)
        if verdict is None:
            self.ignored += 1
            return None
        return Step(verdict, self.tracker.observe(verdict))


def replay(
    samples: Iterable[Sample],
    detector: DetectorSettings | None = None,
    policy: PolicySettings | None = None,
) -> Iterator[Step]:
    """Judge each sample as the operator would when it arrives; stop after the
    first restart (the pod would be gone)."""
    replayer = Replayer(detector, policy)
    for sample in samples:
        step = replayer.step(sample)
        if step is None:
            continue
        yield step
        if step.restart:
            return


def replay_summary(
    samples: Iterable[Sample],
    detector: DetectorSettings | None = None,
    policy: PolicySettings | None = None,
    *,
    verdicts: bool = False,
) -> dict[str, Any]:
    """The outcome of a replay; every verdict only when asked (a long trace has
    millions)."""
    replayer = Replayer(detector, policy)
    restart_at = first_leak_at = None
    kept: list[dict[str, Any]] = []
    loading = 0
    for sample in samples:
        step = replayer.step(sample)
        if step is None:
            continue
        loading += sample.loading
        if step.verdict.leaking and first_leak_at is None:
            first_leak_at = step.verdict.seconds
        if verdicts:
            kept.append({**asdict(step.verdict), "restart": step.restart})
        if step.restart:
            restart_at = step.verdict.seconds
            break
    summary: dict[str, Any] = {
        "restart_at": restart_at,
        "first_leak_at": first_leak_at,
        "samples": replayer.samples,
        "ignored_not_newer": replayer.ignored,
        "loading_samples": loading,
    }
    if verdicts:
        summary["verdicts"] = kept
    return summary
