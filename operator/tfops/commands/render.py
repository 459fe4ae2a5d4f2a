"""`tfops render`: the objects the operator would apply for a ModelServer, with no
cluster (for CI pipelines and GitOps reviews: what will this change do?)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tfops.crd import to_yaml
from tfops.model import GROUP, KIND, NAME_RULE, VERSION, parse_spec
from tfops.plan import make_plan
from tfops.render import Owner, render_all
from tfops.schema import SpecInvalid

EXIT_OK = 0
EXIT_INVALID = 2
# Owner references need the ModelServer's uid, which the apiserver assigns.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"

DESCRIPTION = """Print exactly the objects the operator applies for a ModelServer when it
is created (ConfigMap, Deployment, Service, PodDisruptionBudget, and the
HorizontalPodAutoscaler with autoscaling), with no cluster. Every ModelServer in
the file is rendered; documents of other kinds are skipped."""
EXIT_CODES = """exit codes:
  0  rendered
  2  the file cannot be read or parsed, holds no ModelServer, or a spec is invalid
     (the same field-named message the operator writes to status)"""


class Invalid(Exception):
    """One line for stderr."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", required=True, help="a ModelServer manifest (YAML or JSON), or -"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        help="the namespace to render for (default: the manifest's, else default)",
    )
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")


def _documents(source: str) -> list[Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise Invalid(f"cannot read {source}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise Invalid(f"{source} is not UTF-8 text") from error
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise Invalid(
            f"{source} is not valid YAML{where}: {getattr(error, 'problem', error)}"
        ) from error


def render_manifest(manifest: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
    """The objects for one ModelServer manifest; raises Invalid naming the field."""
    meta = manifest.get("metadata")
    if not isinstance(meta, dict):
        raise Invalid("metadata: must be an object with a name")
    name = meta.get("name")
    if not NAME_RULE.check(name):
        raise Invalid(f"metadata.name: {NAME_RULE.message} (got {json.dumps(name)})")
    try:
        spec = parse_spec(manifest.get("spec"))
        plan = make_plan(spec)
    except SpecInvalid as invalid:
        raise Invalid(f"ModelServer {name}: {invalid}") from invalid
    target = namespace or meta.get("namespace") or "default"
    uid = str(meta.get("uid") or PLACEHOLDER_UID)
    return render_all(Owner(str(name), str(target), uid), plan)


def render_command(args: argparse.Namespace) -> int:
    try:
        documents = _documents(args.filename)
        servers = [
            d
            for d in documents
            if isinstance(d, dict)
            and d.get("kind") == KIND
            and d.get("apiVersion") == f"{GROUP}/{VERSION}"
        ]
        if not servers:
            raise Invalid(f"{args.filename} holds no {GROUP}/{VERSION} {KIND}")
        objects = [obj for manifest in servers for obj in render_manifest(manifest, args.namespace)]
    except Invalid as invalid:
        print(f"tfops render: {invalid}", file=sys.stderr)
        return EXIT_INVALID
    if args.output == "json":
        sys.stdout.write(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2)
        )
        sys.stdout.write("\n")
    else:
        sys.stdout.write("".join(f"---\n{to_yaml(obj)}" for obj in objects))
    return EXIT_OK


def register(commands: Any) -> None:
    render_parser = commands.add_parser(
        "render",
        help="print the objects the operator would apply for a ModelServer (no cluster)",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(render_parser)
    render_parser.set_defaults(handler=render_command)
