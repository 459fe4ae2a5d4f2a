"""What the benchmarks read of a running process from /proc."""

from __future__ import annotations

from pathlib import Path


def high_water_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB: unlike polling RSS, it
    catches a spike between two polls. 0 once the process has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0
    )
