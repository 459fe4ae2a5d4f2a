"""Replay a recorded trace through the detector and restart policy (`tfops guard replay`)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from tfops.memory.detector import DetectorSettings, Sample, Verdict, judge
from tfops.memory.policy import LeakTracker, PolicySettings

HEADER = ("timestamp_seconds", "working_set_bytes", "limit_bytes")


class TraceError(ValueError):
    pass


def read_trace(handle: TextIO, name: str = "trace") -> list[Sample]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise TraceError(f"{name}: the first line must be {','.join(HEADER)}, not {header}")
    samples = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            seconds, working_set, limit = (float(value) for value in row)
        except ValueError as error:
            raise TraceError(f"{name}:{line}: expected three numbers, got {row}") from error
        if not all(math.isfinite(v) for v in (seconds, working_set, limit)):
            raise TraceError(f"{name}:{line}: NaN and infinity are not measurements: {row}")
        if samples and seconds <= samples[-1].seconds:
            raise TraceError(
                f"{name}:{line}: timestamps must increase ({seconds} after {samples[-1].seconds})"
            )
        if limit <= 0 or working_set < 0:
            raise TraceError(f"{name}:{line}: need working_set >= 0 and limit > 0")
        samples.append(Sample(seconds, working_set, limit))
    if not samples:
        raise TraceError(f"{name}: no samples")
    return samples


def write_trace(path: Path, samples: Iterable[Sample]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for sample in samples:
            writer.writerow(
                [f"{sample.seconds:g}", f"{sample.working_set:.0f}", f"{sample.limit:.0f}"]
            )


@dataclass(frozen=True)
class Step:
    verdict: Verdict
    restart: bool


def replay(
    samples: list[Sample],
    detector: DetectorSettings | None = None,
    policy: PolicySettings | None = None,
) -> Iterator[Step]:
    """Judge each sample as the operator would when it arrives; stop after the
    first restart (the pod would be gone)."""
    detector = detector or DetectorSettings()
    tracker = LeakTracker(policy or PolicySettings())
    keep = max(detector.windows_seconds)
    start = 0
    for index, sample in enumerate(samples):
        # The operator keeps only the longest window of history.
        while samples[start].seconds < sample.seconds - keep - 60:
            start += 1
        verdict = judge(samples[start : index + 1], detector)
        restart = tracker.observe(verdict)
        yield Step(verdict, restart)
        if restart:
            return


def replay_summary(
    samples: list[Sample],
    detector: DetectorSettings | None = None,
    policy: PolicySettings | None = None,
) -> dict[str, Any]:
    steps = list(replay(samples, detector, policy))
    restart = next((s.verdict.seconds for s in steps if s.restart), None)
    return {
        "restart_at": restart,
        "samples": len(samples),
        "verdicts": [{**asdict(step.verdict), "restart": step.restart} for step in steps],
    }
