"""TF Serving's REST model-status API, as seen from the operator (the data it returns:
tfops.model_status)."""

from __future__ import annotations

import http.client
import json
import urllib.parse

from tfops.model_status import VersionStatus, parse_model_status


def model_status_url(base_url: str, model: str) -> str:
    return f"{base_url.rstrip('/')}/v1/models/{urllib.parse.quote(model, safe='')}"


class ServingUnreachable(RuntimeError):
    """The pod's REST API did not answer; the message says why."""


def get_model_status(base_url: str, model: str, timeout: float = 2.0) -> list[VersionStatus]:
    """Versions TF Serving knows for `model`; [] when it knows none (HTTP 404).

    One plain HTTP/1.1 GET (http.client, not urllib's opener: at a thousand fleets
    the operator asks 400 times a second, and the opener's handler chain and
    header parsing were most of each ask's CPU)."""
    url = model_status_url(base_url, model)
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServingUnreachable(f"{url}: not an http(s) URL")
    connection_class = http.client.HTTPSConnection if secure else http.client.HTTPConnection
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    except ValueError as error:  # e.g. a port that is not a number
        raise ServingUnreachable(f"{url}: {error}") from error
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        reply = connection.getresponse()
        body = reply.read()
    except (OSError, http.client.HTTPException) as error:
        raise ServingUnreachable(f"{base_url}: {error or type(error).__name__}") from error
    finally:
        connection.close()
    if reply.status == 404:
        return []
    if reply.status != 200:
        raise ServingUnreachable(f"HTTP {reply.status} from {url}")
    try:
        return parse_model_status(json.loads(body))
    except (ValueError, TypeError, AttributeError) as error:  # not TF Serving's JSON
        raise ServingUnreachable(f"{url}: not a model status ({error})") from error
