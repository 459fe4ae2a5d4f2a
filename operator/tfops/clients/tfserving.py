"""TF Serving's REST model-status API, as seen from the operator (the data it returns:
tfops.model_status)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from tfops.model_status import VersionStatus, parse_model_status


def model_status_url(base_url: str, model: str) -> str:
    return f"{base_url.rstrip('/')}/v1/models/{urllib.parse.quote(model, safe='')}"


class ServingUnreachable(RuntimeError):
    """The pod's REST API did not answer; the message says why."""


def get_model_status(base_url: str, model: str, timeout: float = 2.0) -> list[VersionStatus]:
    """Versions TF Serving knows for `model`; [] when it knows none (HTTP 404)."""
    try:
        with urllib.request.urlopen(model_status_url(base_url, model), timeout=timeout) as reply:
            return parse_model_status(json.load(reply))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise ServingUnreachable(f"HTTP {error.code} from {error.url}") from error
    except (OSError, ValueError) as error:
        raise ServingUnreachable(f"{base_url}: {error}") from error
