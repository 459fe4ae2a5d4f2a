"""Replay a recorded trace through the detector and restart policy (`tfops guard replay`)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
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


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    detector, policy = DetectorSettings(), PolicySettings()
    parser.add_argument("trace", type=Path, help="CSV file, or - for standard input")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=detector.warmup_seconds,
        help="ignore samples this soon after the pod started (default %(default)s)",
    )
    parser.add_argument(
        "--sustain-seconds",
        type=float,
        default=policy.sustain_seconds,
        help="a leak verdict must hold this long (default %(default)s)",
    )
    parser.add_argument(
        "--restart-before-seconds",
        type=float,
        default=policy.restart_before_seconds,
        help="restart when the OOM is projected this close (default %(default)s)",
    )
    parser.add_argument(
        "--restart-at-fraction",
        type=float,
        default=policy.restart_at_fraction,
        help="or when a leaking pod uses this share of its limit (default %(default)s)",
    )


def _describe(verdict: Verdict) -> str:
    if not verdict.leaking:
        return f"healthy ({verdict.reason})"
    assert verdict.seconds_to_limit is not None
    return (
        f"LEAKING {verdict.slope * 60 / 2**20:.1f} MiB/min, limit in "
        f"{verdict.seconds_to_limit / 60:.1f} min ({verdict.reason})"
    )


def guard_replay_command(args: argparse.Namespace) -> int:
    try:
        if str(args.trace) == "-":
            samples = read_trace(sys.stdin, "stdin")
        else:
            # utf-8-sig: a byte-order mark (spreadsheets write one) is not data.
            with args.trace.open(encoding="utf-8-sig", newline="") as handle:
                samples = read_trace(handle, str(args.trace))
    except UnicodeDecodeError:
        print(f"tfops guard replay: {args.trace} is not a UTF-8 CSV file", file=sys.stderr)
        return 2
    except csv.Error as error:
        print(f"tfops guard replay: {args.trace}: not a CSV file ({error})", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"tfops guard replay: cannot read {args.trace}: {error.strerror}", file=sys.stderr)
        return 2
    except TraceError as error:
        print(f"tfops guard replay: {error}", file=sys.stderr)
        return 2
    detector = DetectorSettings(warmup_seconds=args.warmup_seconds)
    policy = PolicySettings(
        sustain_seconds=args.sustain_seconds,
        restart_before_seconds=args.restart_before_seconds,
        restart_at_fraction=args.restart_at_fraction,
    )
    summary = replay_summary(samples, detector, policy)
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
        return 0
    previous = None
    for entry in summary["verdicts"]:
        verdict = Verdict(**{k: v for k, v in entry.items() if k != "restart"})
        line = _describe(verdict)
        state = verdict.leaking
        if state != previous or entry["restart"]:
            print(f"{verdict.seconds:>10.0f}s  {verdict.usage_fraction:6.1%} of limit  {line}")
            previous = state
        if entry["restart"]:
            print(f"{verdict.seconds:>10.0f}s  RESTART (evicted through the Eviction API)")
    if summary["restart_at"] is None:
        print(f"No restart over {len(samples)} samples.")
    return 0
