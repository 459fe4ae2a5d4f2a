"""The harness leaves nothing behind: a stopped or killed cluster takes its
processes with it, and a second cluster runs beside the session's one."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tfops.devcluster import LocalCluster, find_control_plane
from tfops.testing.support import wait_for


def _start_dev_cluster(workdir: Path) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tfops", "dev-cluster", "--workdir", str(workdir), "--nodes", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TFOPS_CONTROL_PLANE": str(find_control_plane())},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 180)
    line = process.stdout.readline() if ready else ""
    assert line.startswith("export KUBECONFIG="), f"dev-cluster did not start: {line!r}"
    children = psutil.Process(process.pid).children(recursive=True)
    assert {child.name() for child in children} >= {"etcd", "kube-apiserver", "kwok"}
    return process, children


def _all_gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


@pytest.mark.parametrize(
    ("how", "expected_exit"),
    [(signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["stopped", "killed"],
)
def test_a_second_cluster_leaves_no_process_behind(
    cluster: LocalCluster, tmp_path: Path, how: signal.Signals, expected_exit: int
) -> None:
    # `cluster` is the session's control plane: both run side by side.
    process, children = _start_dev_cluster(tmp_path / "second")
    process.send_signal(how)
    assert process.wait(timeout=30) == expected_exit
    wait_for(lambda: _all_gone(children), timeout=20, what="the second cluster's processes to exit")
    # The session's cluster was not disturbed.
    assert cluster.kubectl("get", "--raw", "/readyz").stdout == "ok"
