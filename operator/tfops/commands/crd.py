"""`tfops crd`: the ModelServer CustomResourceDefinition, generated from the code."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("crd", help="print the ModelServer CRD (generated from the code)")
    parser.set_defaults(handler=run)


def run(_args: argparse.Namespace) -> int:
    from tfops.crd import render_crd, to_yaml

    sys.stdout.write(to_yaml(render_crd()))
    return 0
