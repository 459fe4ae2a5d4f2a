"""`tfops guard replay`: one pod's recorded memory trace through the same detector
and restart policy the operator uses."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from tfops.memory.detector import DetectorSettings, Verdict
from tfops.memory.policy import PolicySettings
from tfops.memory.replay import TraceError, read_trace, replay_summary
from tfops.quantity import mib_per_minute


def register(commands: Any) -> None:
    guard = commands.add_parser("guard", help="the memory guard's tools")
    guard_commands = guard.add_subparsers(dest="guard_command", metavar="COMMAND", required=True)
    replay_parser = guard_commands.add_parser(
        "replay",
        help="run the leak detector and restart policy over a recorded trace",
        description="Replay one pod's memory trace (CSV: timestamp_seconds,working_set_bytes,"
        "limit_bytes; time from the pod's start) through the same detector and restart policy "
        "the operator uses, with the same defaults.",
    )
    add_replay_arguments(replay_parser)
    replay_parser.set_defaults(handler=guard_replay_command)


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
        f"LEAKING {mib_per_minute(verdict.slope):.1f} MiB/min, limit in "
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
