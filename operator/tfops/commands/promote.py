"""`tfops promote`: one command for a pipeline to put a model version into service.

It changes the ModelServer (a JSON patch guarded by the model's name and the
object's resourceVersion), then follows the operator's progress in status until
the version serves under the label on every ready pod, or the operator rolls it
back. The operator does the work; this command only asks and watches, so an
interrupted command leaves a promotion that still completes (or rolls back).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tfops.model import LABEL_PATTERN, MAX_VERSION, NAME_PATTERN, parse_spec
from tfops.plan import Plan, make_plan
from tfops.promotion import DONE, REFUSED, ROLLED_BACK, Configured, planned_steps, promoted_model
from tfops.schema import SpecInvalid, matches

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ROLLED_BACK = 3
EXIT_BREAKING = 4
EXIT_TIMEOUT = 5
EXIT_NEEDS_TENSORFLOW = 6

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  the version serves (under the label) on every ready pod
  {EXIT_ERROR}  the cluster could not be reached or answered with an error
  {EXIT_USAGE}  bad arguments: no such ModelServer or model, or the apiserver refused the change
  {EXIT_ROLLED_BACK}  the operator rolled the promotion back (the version failed to load or was
     late) or refused it (memory); the previous version keeps serving
  {EXIT_BREAKING}  --validate found a breaking signature change (see --allow-breaking)
  {EXIT_TIMEOUT}  --timeout passed first; the promotion goes on in the cluster
  {EXIT_NEEDS_TENSORFLOW}  --validate needs TensorFlow: pip install 'tfops[tf]'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modelserver", help="the ModelServer's name")
    parser.add_argument("--model", required=True, type=_model_name, help="the model to promote")
    parser.add_argument(
        "--version", required=True, type=_version, help="the version to serve (a number >= 0)"
    )
    parser.add_argument(
        "--label", type=_label, help="the label to move to the version, e.g. stable"
    )
    parser.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig's")
    parser.add_argument(
        "--timeout", default="10m", help="how long to follow the promotion (e.g. 90s, 10m, 1h)"
    )
    parser.add_argument(
        "--validate",
        type=Path,
        metavar="PATH",
        help="the new version's directory: refuse the promotion if its signatures would "
        "break clients of the serving version",
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="PATH",
        help="with --validate: the serving version's directory (default: PATH's sibling "
        "named after the serving version)",
    )
    parser.add_argument(
        "--against-url",
        metavar="URL",
        help="with --validate: TF Serving's REST base URL to read the serving version's "
        "metadata from, e.g. http://ranker.ml:8501",
    )
    parser.add_argument(
        "--allow-breaking", action="store_true", help="promote despite a breaking change"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the change and its steps; change nothing"
    )


def _version(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) > MAX_VERSION:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a version number (0 to {MAX_VERSION}, the directory's name)"
        )
    return int(text)


def _label(text: str) -> str:
    if not matches(LABEL_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a label (letters, digits and '_')")
    return text


def _model_name(text: str) -> str:
    if not matches(NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model name (letters, digits, '_', '.' and '-')"
        )
    return text


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--timeout {text!r}: use e.g. 90s, 10m or 1h")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, None: 1}[match[2]]


class Failed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Progress:
    """Readable progress: one rewritten line on a terminal, plain lines otherwise."""

    out: TextIO
    started: float
    last: str = ""

    def show(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        stamp = f"[{time.monotonic() - self.started:5.0f}s]"
        if self.out.isatty():
            self.out.write(f"\r\033[K{stamp} {text}")
        else:
            self.out.write(f"{stamp} {text}\n")
        self.out.flush()

    def done(self, text: str) -> None:
        if self.out.isatty() and self.last:
            self.out.write("\n")
        self.out.write(f"{text}\n")
        self.out.flush()


def promote_command(args: argparse.Namespace) -> int:
    try:
        timeout = parse_duration(args.timeout)
        return _promote(args, timeout)
    except argparse.ArgumentTypeError as error:
        print(f"tfops promote: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Failed as failure:
        print(f"tfops promote: {failure}", file=sys.stderr)
        return failure.code


def _api(namespace: str | None) -> tuple[Any, str]:
    from tfops.clients import kube

    try:
        api = kube.api_client()
    except kube.NoCluster as error:
        raise Failed(EXIT_ERROR, str(error)) from error
    return api, namespace or kube.default_namespace()


def _promote(args: argparse.Namespace, timeout: float) -> int:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from tfops.clients import kube

    try:
        return _promote_on(args, timeout)
    except (OSError, urllib3.exceptions.HTTPError) as error:
        raise Failed(EXIT_ERROR, f"the cluster did not answer: {error}") from error
    except ApiException as error:
        raise Failed(
            EXIT_ERROR, f"the cluster answered HTTP {error.status}: {kube.error_message(error)}"
        ) from error


def _promote_on(args: argparse.Namespace, timeout: float) -> int:
    from kubernetes.client.exceptions import ApiException

    from tfops.clients import kube

    api, namespace = _api(args.namespace)
    try:
        found = kube.read_modelserver(api, namespace, args.modelserver)
    except ApiException as error:
        raise Failed(
            EXIT_ERROR, f"reading the ModelServer: HTTP {error.status}: {kube.error_message(error)}"
        ) from error
    if found is None:
        raise Failed(EXIT_USAGE, f"no ModelServer {args.modelserver!r} in namespace {namespace!r}")
    body = found
    models = body.get("spec", {}).get("models") or []
    index = next((i for i, m in enumerate(models) if m.get("name") == args.model), None)
    if index is None:
        names = ", ".join(m.get("name", "?") for m in models)
        raise Failed(
            EXIT_USAGE, f"ModelServer {args.modelserver} has no model {args.model!r} ({names})"
        )
    current_raw = models[index]
    changed_raw = promoted_model(current_raw, args.version, args.label)
    current, _ = _configured(body["spec"], index, "the ModelServer's spec")
    changed_spec = {**body["spec"], "models": [*models[:index], changed_raw, *models[index + 1 :]]}
    desired, plan = _configured(changed_spec, index, "the promoted spec")
    grace = float(plan.promotion_grace_seconds)

    if args.validate is not None:
        _validate(args, body, current)

    patch = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": body["metadata"]["resourceVersion"],
        },
        {"op": "test", "path": f"/spec/models/{index}/name", "value": args.model},
        {"op": "replace", "path": f"/spec/models/{index}", "value": changed_raw},
    ]
    steps = planned_steps(args.model, current, desired, grace)
    if args.dry_run:
        print(f"ModelServer {namespace}/{args.modelserver}, model {args.model}:")
        for number, text in enumerate(steps, 1):
            print(f"  {number}. {text}")
        print("The change (a JSON patch):")
        print(json.dumps(patch, indent=2))
        return EXIT_OK
    try:
        updated = kube.json_patch_modelserver(api, namespace, args.modelserver, patch)
    except ApiException as error:
        raise Failed(
            EXIT_USAGE if error.status in (400, 409, 422) else EXIT_ERROR,
            kube.error_message(error),
        ) from error
    generation = int(updated["metadata"]["generation"])
    print(
        f"Promoting {args.model} to version {args.version}"
        + (f" under label {args.label}" if args.label else "")
        + f" in {namespace}/{args.modelserver} (generation {generation}):",
        flush=True,
    )
    return _follow(
        api,
        namespace=namespace,
        name=args.modelserver,
        model=args.model,
        desired=desired,
        generation=generation,
        timeout=timeout,
    )


def _configured(spec_body: dict[str, Any], index: int, what: str) -> tuple[Configured, Plan]:
    """What models.config says of the model at `index` under this spec, parsed and
    planned as the operator would: a change it would refuse is refused here."""
    try:
        spec = parse_spec(spec_body)
        plan = make_plan(spec)
    except SpecInvalid as invalid:
        raise Failed(EXIT_USAGE, f"{what} is invalid: {invalid}") from invalid
    return Configured.of(spec.models[index]), plan


def _follow(
    api: Any,
    *,
    namespace: str,
    name: str,
    model: str,
    desired: Configured,
    generation: int,
    timeout: float,
) -> int:
    from tfops.clients import kube

    progress = Progress(sys.stdout, time.monotonic())
    deadline = time.monotonic() + timeout
    while True:
        status = (kube.read_modelserver(api, namespace, name) or {}).get("status") or {}
        verdict = judge(status, model, desired, generation)
        if verdict.code is not None:
            progress.done(verdict.text)
            return verdict.code
        progress.show(verdict.text)
        if time.monotonic() > deadline:
            progress.done(
                f"Timed out; the promotion goes on in the cluster: {verdict.text} "
                f"(kubectl get ms {name} -n {namespace} -o yaml)"
            )
            return EXIT_TIMEOUT
        time.sleep(1)


@dataclass(frozen=True)
class Verdict:
    code: int | None  # None: still in progress
    text: str


def judge(status: dict[str, Any], model: str, desired: Configured, generation: int) -> Verdict:
    """Where the promotion stands, from the ModelServer's status. Pure."""
    if int(status.get("observedGeneration", 0)) < generation:
        return Verdict(None, "waiting for the operator to see the change")
    record = next((r for r in status.get("promotions") or [] if r["model"] == model), None)
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    ready_now = (
        ready.get("status") == "True" and int(ready.get("observedGeneration", 0)) >= generation
    )
    if record is not None and Configured.from_json(record["to"]) == desired:
        if record["step"] in (ROLLED_BACK, REFUSED) and int(record["generation"]) == generation:
            return Verdict(EXIT_ROLLED_BACK, f"FAILED: {record['message']}")
        if record["step"] == DONE and ready_now:
            return Verdict(
                EXIT_OK, f"Done: model {model} serves {desired.describe()} on every ready pod"
            )
        pods = _availability(status, model)
        return Verdict(None, f"{record['step']}: {pods}" if pods else record["step"])
    if ready_now:
        return Verdict(
            EXIT_OK, f"Done: model {model} serves {desired.describe()} on every ready pod"
        )
    return Verdict(None, f"{ready.get('reason', 'waiting')}: {ready.get('message', '')}".strip())


def _availability(status: dict[str, Any], model: str) -> str:
    entry = next((m for m in status.get("models") or [] if m["name"] == model), None)
    if not entry:
        return ""
    ready = int(status.get("readyReplicas", 0))
    return ", ".join(
        f"version {v['version']} {v['state']} on {v.get('availablePods', 0)}/{ready} pods"
        for v in entry.get("versions") or []
    )


def _validate(args: argparse.Namespace, body: dict[str, Any], current: Configured) -> None:
    from tfops import signatures
    from tfops.savedmodel import NeedsTensorFlow, NotASavedModel, read_signatures

    serving = dict(current.labels).get(args.label or "") or max(current.versions or (0,))
    try:
        new = read_signatures(args.validate)
        if args.against_url:
            old = _signatures_from_url(args.against_url, args.model, serving)
            source = f"{args.against_url} (version {serving})"
        else:
            against = args.against or args.validate.parent / str(serving)
            old = read_signatures(against)
            source = str(against)
    except NeedsTensorFlow as error:
        raise Failed(EXIT_NEEDS_TENSORFLOW, str(error)) from error
    except NotASavedModel as error:
        raise Failed(EXIT_USAGE, str(error)) from error
    changes = signatures.compare(old, new)
    breaking = [c for c in changes if c.breaking]
    print(f"Signatures of {args.validate} against the serving version ({source}):")
    for change in changes or [signatures.Change(False, "no differences")]:
        print(f"  {'BREAKING ' if change.breaking else ''}{change.text}")
    if breaking and not args.allow_breaking:
        raise Failed(
            EXIT_BREAKING,
            f"version {args.version} would break clients of version {serving} "
            f"({len(breaking)} breaking change(s) above); fix the export or pass "
            "--allow-breaking",
        )


def _signatures_from_url(base: str, model: str, version: int) -> Any:
    from tfops.signatures import signatures_from_metadata

    url = f"{base.rstrip('/')}/v1/models/{model}/versions/{version}/metadata"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return signatures_from_metadata(json.loads(response.read()))
    except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
        raise Failed(EXIT_ERROR, f"reading {url}: {error}") from error


def register(commands: Any) -> None:
    promote_parser = commands.add_parser(
        "promote",
        help="put a model version into service (for CI pipelines)",
        description="Serve VERSION of a model (under LABEL) on every ready pod of a "
        "ModelServer: old and new side by side, the label moved once the new version is "
        "AVAILABLE everywhere, the old one unloaded after a grace period; rolled back by the "
        "operator when the new version fails. Follows the progress until done.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(promote_parser)
    promote_parser.set_defaults(handler=promote_command)
