"""Timestamps as Kubernetes writes them (RFC 3339, UTC, `Z`), in one place."""

from __future__ import annotations

import datetime


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp such as 2026-01-02T03:04:05Z."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def iso(seconds: float) -> str:
    """An epoch time as Kubernetes' `Time` (whole seconds)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime.datetime) -> str:
    """Kubernetes' `MicroTime` (Leases, Events)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
