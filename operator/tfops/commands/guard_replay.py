"""`tfops guard replay`: one pod's recorded memory trace through the same detector
and restart policy the operator uses."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tfops.memory.detector import DetectorSettings, Sample, Verdict
from tfops.memory.policy import PolicySettings
from tfops.memory.replay import Replayer, TraceError, read_trace, replay_summary
from tfops.quantity import mib_per_minute


def register(commands: Any) -> None:
    guard = commands.add_parser("guard", help="the memory guard's tools")
    guard_commands = guard.add_subparsers(dest="guard_command", metavar="COMMAND", required=True)
    replay_parser = guard_commands.add_parser(
        "replay",
        help="run the leak detector and restart policy over a recorded trace",
        description="Replay one pod's memory trace (CSV: timestamp_seconds,working_set_bytes,"
        "limit_bytes[,loading]; time from the pod's start; loading 1 while a model version "
        "loads or unloads) through the same detector and restart policy the operator uses, "
        "with the same defaults. Streams: any length, in bounded memory. Repeated or "
        "out-of-order timestamps are ignored, as the live guard ignores them; the sampling "
        "interval is inferred from the timestamps.",
    )
    add_replay_arguments(replay_parser)
    replay_parser.set_defaults(handler=guard_replay_command)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    detector, policy = DetectorSettings(), PolicySettings()
    parser.add_argument("trace", type=Path, help="CSV file, or - for standard input")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--verdicts", action="store_true", help="with --json: every verdict too (long!)"
    )
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
        help="restart when the OOM is projected this close, or within 15%% of the time "
        "the leak has been seen (default %(default)s)",
    )


def _describe(verdict: Verdict) -> str:
    if not verdict.leaking:
        return f"healthy ({verdict.reason})"
    assert verdict.seconds_to_limit is not None
    return (
        f"LEAKING {mib_per_minute(verdict.slope):.1f} MiB/min, limit in "
        f"{verdict.seconds_to_limit / 60:.1f} min ({verdict.reason})"
    )


@contextlib.contextmanager
def _samples(path: Path) -> Iterator[Iterator[Sample]]:
    if str(path) == "-":
        yield read_trace(sys.stdin, "stdin")
        return
    # utf-8-sig: a byte-order mark (spreadsheets write one) is not data; newline=""
    # lets csv take CRLF line ends.
    handle: TextIO
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield read_trace(handle, str(path))


def guard_replay_command(args: argparse.Namespace) -> int:
    detector = DetectorSettings(warmup_seconds=args.warmup_seconds)
    policy = PolicySettings(
        sustain_seconds=args.sustain_seconds,
        restart_before_seconds=args.restart_before_seconds,
    )
    try:
        with _samples(args.trace) as samples:
            if args.json:
                summary = replay_summary(samples, detector, policy, verdicts=args.verdicts)
                json.dump(summary, sys.stdout)
                sys.stdout.write("\n")
                return 0
            _print_timeline(samples, Replayer(detector, policy))
    except UnicodeDecodeError:
        print(f"tfops guard replay: {args.trace} is not a UTF-8 CSV file", file=sys.stderr)
    except csv.Error as error:
        print(f"tfops guard replay: {args.trace}: not a CSV file ({error})", file=sys.stderr)
    except OSError as error:
        print(f"tfops guard replay: cannot read {args.trace}: {error.strerror}", file=sys.stderr)
    except TraceError as error:
        print(f"tfops guard replay: {error}", file=sys.stderr)
    else:
        return 0
    return 2


def _print_timeline(samples: Iterator[Sample], replayer: Replayer) -> None:
    """Each change of verdict (and a restart) as it happens."""
    previous = None
    restarted = False
    for sample in samples:
        step = replayer.step(sample)
        if step is None:
            continue
        verdict = step.verdict
        if verdict.leaking != previous or step.restart:
            line = _describe(verdict)
            print(f"{verdict.seconds:>10.0f}s  {verdict.usage_fraction:6.1%} of limit  {line}")
            previous = verdict.leaking
        if step.restart:
            print(f"{verdict.seconds:>10.0f}s  RESTART (evicted through the Eviction API)")
            restarted = True
            break
    if replayer.ignored:
        print(f"Ignored {replayer.ignored} samples not newer than the one before.")
    if not restarted:
        print(f"No restart over {replayer.samples} samples.")
