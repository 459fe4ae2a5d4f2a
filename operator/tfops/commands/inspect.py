"""`tfops inspect PATH`: what a SavedModel version directory holds and what tfops
would give it (TensorFlow needed; loaded in a child process)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from tfops import signatures
from tfops.model import parse_spec
from tfops.plan import make_plan
from tfops.quantity import MiB, format_bytes, human_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a version directory, e.g. /models/ranker/48")
    parser.add_argument("--json", action="store_true", help="one JSON object, for pipelines")
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="skip loading the model to measure its resident memory (faster)",
    )


def inspect(path: Path, *, load: bool = True) -> dict[str, Any]:
    from tfops import savedmodel

    found = savedmodel.read_signatures(path)
    warmup = savedmodel.check_warmup(path)
    disk = savedmodel.disk_bytes(path)
    resident = savedmodel.measure_resident_bytes(path) if load else None
    # What to declare as the model's size: what a load holds, at least what it reads.
    size = max(disk, resident or 0)
    declared = f"{max(1, math.ceil(size / MiB))}Mi"
    spec = parse_spec(
        {
            "models": [{"name": "model", "basePath": "/models/model", "size": declared}],
            "modelStorage": {"claimName": "models"},
        }
    )
    memory = make_plan(spec).memory
    return {
        "path": str(path),
        "diskBytes": disk,
        "residentBytes": resident,
        "signatures": signatures.to_json(found),
        "warmup": {
            "present": warmup.present,
            "valid": warmup.valid,
            "records": warmup.records,
            **({"error": warmup.error} if warmup.error else {}),
        },
        "suggested": {
            "size": declared,
            "memoryRequest": format_bytes(memory.request_bytes),
            "memoryLimit": format_bytes(memory.limit_bytes),
        },
        "_signatures": found,
    }


def inspect_command(args: argparse.Namespace) -> int:
    from tfops.savedmodel import NeedsTensorFlow, NotASavedModel

    try:
        report = inspect(args.path, load=not args.no_load)
    except NeedsTensorFlow as error:
        print(f"tfops inspect: {error}", file=sys.stderr)
        return 3
    except NotASavedModel as error:
        print(f"tfops inspect: {error}", file=sys.stderr)
        return 1
    found = report.pop("_signatures")
    warmup = report["warmup"]
    unloadable = warmup["present"] and not warmup["valid"]
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if unloadable else 0
    resident = report["residentBytes"]
    rows = [
        ("path", report["path"]),
        ("size on disk", human_bytes(report["diskBytes"])),
        ("resident after load", "not measured" if resident is None else human_bytes(resident)),
        (
            "warm-up requests",
            "none (first requests pay the warm-up)"
            if not warmup["present"]
            else f"{warmup['records']} record(s), valid"
            if warmup["valid"]
            else f"INVALID: {warmup.get('error', '')} (TF Serving fails the load)",
        ),
        ("declare size", report["suggested"]["size"]),
        (
            "tfops derives",
            f"memory request {report['suggested']['memoryRequest']}, limit "
            f"{report['suggested']['memoryLimit']} (one version plus one transition)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("signatures")
    for line in signatures.describe(found):
        print(f"  {line}")
    if unloadable:
        print(
            f"tfops inspect: the warm-up file is invalid ({warmup.get('error', '')}); TF "
            "Serving would fail to load this version",
            file=sys.stderr,
        )
        return 1
    return 0


def register(commands: Any) -> None:
    inspect_parser = commands.add_parser(
        "inspect",
        help="signatures, size, memory and warm-up of a SavedModel version (TensorFlow)",
        description="Report a SavedModel version directory: serving signatures, size on "
        "disk, resident memory after a load (measured in a child process), the warm-up "
        "file, and the memory tfops would derive. Needs the tfops[tf] extra.",
    )
    add_arguments(inspect_parser)
    inspect_parser.set_defaults(handler=inspect_command)
