"""The `tfops` command line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from tfops import __version__
from tfops.config import DEFAULT_SERVING_URL_TEMPLATE


def _run_operator(args: argparse.Namespace) -> int:
    # Imported here so `tfops --version` and the dev tools stay fast and light.
    from tfops.config import OperatorConfig
    from tfops.main import LeaderElection, run_operator

    operator_config = OperatorConfig(
        serving_url_template=args.serving_url_template,
        resync_seconds=args.resync_seconds,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        guard_checkpoint_seconds=args.guard_checkpoint_seconds,
        memory_source=args.memory_source,
        prometheus_url=args.prometheus_url or "",
    )
    if args.memory_source == "prometheus" and not args.prometheus_url:
        print(
            "tfops run: --memory-source prometheus needs --prometheus-url, e.g. "
            "http://prometheus.monitoring:9090",
            file=sys.stderr,
        )
        return 2
    election = None
    if args.leader_elect:
        namespace = args.leader_election_namespace or os.environ.get("POD_NAMESPACE", "default")
        election = LeaderElection(namespace)
    return run_operator(
        operator_config,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        verbose=args.verbose,
        log_format=args.log_format,
        leader_election=election,
    )


def _render(args: argparse.Namespace) -> int:
    from tfops.commands.render import render_command

    return render_command(args)


def _print_crd(_args: argparse.Namespace) -> int:
    from tfops.crd import render_crd, to_yaml

    sys.stdout.write(to_yaml(render_crd()))
    return 0


def _guard_replay(args: argparse.Namespace) -> int:
    from tfops.memory.replay import guard_replay_command

    return guard_replay_command(args)


def _promote(args: argparse.Namespace) -> int:
    from tfops.promote import promote_command

    return promote_command(args)


def _inspect(args: argparse.Namespace) -> int:
    from tfops.inspect_command import inspect_command

    return inspect_command(args)


def _dev_cluster(args: argparse.Namespace) -> int:
    from tfops.devcluster.cli import dev_cluster_command

    return dev_cluster_command(args)


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr (and exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfops",
        description="Run TensorFlow Serving safely on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"tfops {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="run the operator (kopf) against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); cluster-wide when omitted",
    )
    run.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    run.add_argument(
        "--serving-url-template",
        default=DEFAULT_SERVING_URL_TEMPLATE,
        metavar="TEMPLATE",
        help="where to reach a pod's TF Serving REST API, with {pod_ip}, {namespace} and "
        "{pod}; empty to skip model-state checks (default %(default)s)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=10.0,
        help="re-observe every ModelServer this often (default %(default)s)",
    )
    run.add_argument("--metrics-host", default="0.0.0.0", help="metrics bind address")
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="metrics port, 0 for none (default 8080)"
    )
    run.add_argument(
        "--guard-checkpoint-seconds",
        type=float,
        default=300.0,
        help="save the memory guard's pod histories this often, so a restart of the "
        "operator keeps them (default %(default)s)",
    )
    run.add_argument(
        "--memory-source",
        choices=("metrics-server", "prometheus"),
        default="metrics-server",
        help="where the memory guard reads working sets: metrics.k8s.io, or Prometheus "
        "(container_memory_working_set_bytes, which also gives a pod's past at once) "
        "(default %(default)s)",
    )
    run.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus' base URL for --memory-source prometheus",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: act only while holding the Lease tfops-leader",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=None,
        metavar="NAMESPACE",
        help="where the Lease lives (default: $POD_NAMESPACE, else default)",
    )
    run.add_argument(
        "--log-format",
        choices=("plain", "full", "json"),
        default="full",
        help="log lines: plain, full (with time and logger) or json (default %(default)s)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    run.set_defaults(handler=_run_operator)

    from tfops.commands import render

    render_parser = commands.add_parser(
        "render",
        help="print the objects the operator would apply for a ModelServer (no cluster)",
        description=render.DESCRIPTION,
        epilog=render.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_arguments(render_parser)
    render_parser.set_defaults(handler=_render)

    crd = commands.add_parser("crd", help="print the ModelServer CRD (generated from the code)")
    crd.set_defaults(handler=_print_crd)

    guard = commands.add_parser("guard", help="the memory guard's tools")
    guard_commands = guard.add_subparsers(dest="guard_command", metavar="COMMAND", required=True)
    replay = guard_commands.add_parser(
        "replay",
        help="run the leak detector and restart policy over a recorded trace",
        description="Replay one pod's memory trace (CSV: timestamp_seconds,working_set_bytes,"
        "limit_bytes; time from the pod's start) through the same detector and restart policy "
        "the operator uses, with the same defaults.",
    )
    from tfops.memory.replay import add_replay_arguments

    add_replay_arguments(replay)
    replay.set_defaults(handler=_guard_replay)

    from tfops import inspect_command, promote

    promote_parser = commands.add_parser(
        "promote",
        help="put a model version into service (for CI pipelines)",
        description="Serve VERSION of a model (under LABEL) on every ready pod of a "
        "ModelServer: old and new side by side, the label moved once the new version is "
        "AVAILABLE everywhere, the old one unloaded after a grace period; rolled back by the "
        "operator when the new version fails. Follows the progress until done.",
        epilog=promote.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_arguments(promote_parser)
    promote_parser.set_defaults(handler=_promote)

    inspect_parser = commands.add_parser(
        "inspect",
        help="signatures, size, memory and warm-up of a SavedModel version (TensorFlow)",
        description="Report a SavedModel version directory: serving signatures, size on "
        "disk, resident memory after a load (measured in a child process), the warm-up "
        "file, and the memory tfops would derive. Needs the tfops[tf] extra.",
    )
    inspect_command.add_arguments(inspect_parser)
    inspect_parser.set_defaults(handler=_inspect)

    dev = commands.add_parser(
        "dev-cluster",
        help="a local control plane on loopback for tests and the demo (not for production)",
    )
    from tfops.devcluster.cli import add_arguments

    add_arguments(dev)
    dev.set_defaults(handler=_dev_cluster)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Whatever happens, the user gets one line on stderr and a
    documented exit code, never a traceback (TFOPS_DEBUG=1 prints it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    name = f"tfops {args.command}"
    try:
        code = int(args.handler(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # stdout closed or full, and the like
        _silence_stdout()
        print(f"{name}: {error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:  # a bug: still one line, and how to see more
        if os.environ.get("TFOPS_DEBUG"):
            traceback.print_exc()
        print(
            f"{name}: unexpected {type(error).__name__}: {error} "
            "(set TFOPS_DEBUG=1 for details, and please report it)",
            file=sys.stderr,
        )
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed or
    full stdout does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
