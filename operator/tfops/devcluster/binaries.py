"""Where the control-plane binaries are: the cache, built on first use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tfops.devcluster.cluster import ClusterError

_BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "build-control-plane.sh"


def find_control_plane() -> Path:
    """The cache directory holding the control-plane binaries, building them if needed.

    `$TFOPS_CONTROL_PLANE` wins; otherwise, inside a checkout, the build script
    prints the directory (building first when the cache is empty).
    """
    configured = os.environ.get("TFOPS_CONTROL_PLANE")
    if configured:
        return Path(configured)
    if not _BUILD_SCRIPT.is_file():
        raise ClusterError(
            "no control plane: set TFOPS_CONTROL_PLANE to a directory built by "
            "hack/build-control-plane.sh, or run from a tfops checkout"
        )
    result = subprocess.run(
        ["bash", str(_BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"{_BUILD_SCRIPT} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])
