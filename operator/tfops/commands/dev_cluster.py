"""`tfops dev-cluster`: run the local control plane in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dev-cluster",
        help="a local control plane on loopback for tests and the demo (not for production)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep certificates, kubeconfig, etcd data and logs here (default: a temp dir)",
    )
    parser.add_argument("--nodes", type=int, default=2, help="number of kwok nodes (default 2)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tfops.devcluster import ClusterError, LocalCluster, find_control_plane

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster = LocalCluster(
            find_control_plane(),
            args.workdir,
            nodes=args.nodes,
            log=lambda message: print(message, file=sys.stderr, flush=True),
        )
        cluster.start()
    except ClusterError as error:
        print(f"tfops dev-cluster: {error}", file=sys.stderr)
        return 1
    try:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print("The cluster runs until Ctrl-C.", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        cluster.stop()
    return 0
