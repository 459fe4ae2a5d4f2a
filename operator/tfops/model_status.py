"""TF Serving's model status (GET /v1/models/NAME) as data: what the operator,
the promotion steps and status reason about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    @property
    def failed(self) -> bool:
        # A failed load ends in END with a non-OK status.
        return self.state == "END" and self.error_code not in ("OK", "", "0")


def parse_model_status(payload: dict[str, object]) -> list[VersionStatus]:
    """Decode GET /v1/models/NAME: {"model_version_status": [{"version": "47",
    "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}."""
    entries = payload.get("model_version_status") or []
    result = []
    for entry in entries if isinstance(entries, list) else []:
        status = entry.get("status") or {}
        result.append(
            VersionStatus(
                version=int(entry.get("version", 0)),
                state=str(entry.get("state", "UNKNOWN")),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            )
        )
    return sorted(result, key=lambda v: v.version)
