"""The operator's readiness follows the API server; its liveness does not."""

from __future__ import annotations

import io
from typing import Any

from tfops.health import ApiHealth
from tfops.metrics import app


def _get(health: ApiHealth, path: str) -> tuple[str, str]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = status

    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
    }
    body = b"".join(app(health)(environ, start_response))
    return answer["status"], body.decode()


def test_not_ready_before_the_api_server_was_reached() -> None:
    assert not ApiHealth().readiness(0.0).ready


def test_one_failure_is_not_an_outage() -> None:
    health = ApiHealth(unready_after_seconds=30)
    health.succeeded()
    health.failed(100.0, "connection refused")
    assert health.readiness(129.0).ready
    assert "retrying" in health.readiness(129.0).reason


def test_failures_for_the_whole_window_make_it_unready_until_one_success() -> None:
    health = ApiHealth(unready_after_seconds=30)
    health.succeeded()
    health.failed(100.0, "connection refused")
    health.failed(120.0, "timed out")
    readiness = health.readiness(131.0)
    assert not readiness.ready
    assert "31s" in readiness.reason and "timed out" in readiness.reason
    health.succeeded()
    assert health.readiness(200.0).ready


def test_readyz_answers_503_with_the_reason_and_livez_200() -> None:
    health = ApiHealth(unready_after_seconds=0)
    health.failed(0.0, "connection refused")
    status, body = _get(health, "/readyz")
    assert status.startswith("503") and "connection refused" in body
    assert _get(health, "/livez")[0].startswith("200")
    health.succeeded()
    assert _get(health, "/readyz")[0].startswith("200")


def test_metrics_are_still_served() -> None:
    status, body = _get(ApiHealth(), "/metrics")
    assert status.startswith("200") and "tfops_reconciles_total" in body
