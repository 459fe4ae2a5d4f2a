"""The operator's model-status client against a local HTTP server: answers,
refusals and silence each end as a result or a ServingUnreachable, never hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tfops.clients.tfserving import ServingUnreachable, get_model_status

REPLIES = {
    "/pods/ml/p/v1/models/ranker": (
        200,
        b'{"model_version_status": [{"version": "2", "state": "AVAILABLE",'
        b' "status": {"error_code": "OK", "error_message": ""}},'
        b' {"version": "1", "state": "LOADING", "status": {}}]}',
    ),
    "/pods/ml/p/v1/models/broken": (500, b"{}"),
    "/pods/ml/p/v1/models/html": (200, b"<html>proxy</html>"),
    "/pods/ml/p/v1/models/list": (200, b"[1, 2]"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = REPLIES.get(self.path, (404, b'{"error": "not found"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pods/ml/p"
    finally:
        server.shutdown()
        server.server_close()


def test_versions_come_sorted_and_an_unknown_model_has_none(base: str) -> None:
    versions = get_model_status(base, "ranker")
    assert [(v.version, v.state) for v in versions] == [(1, "LOADING"), (2, "AVAILABLE")]
    assert get_model_status(base, "missing") == []


@pytest.mark.parametrize("model", ["broken", "html", "list"])
def test_what_is_not_a_model_status_is_unreachable(base: str, model: str) -> None:
    with pytest.raises(ServingUnreachable, match=model if model == "broken" else "model status"):
        get_model_status(base, model)


def test_a_pod_that_never_answers_costs_one_time_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never reads or answers
    try:
        started = time.monotonic()
        with pytest.raises(ServingUnreachable, match="timed out"):
            get_model_status(f"http://127.0.0.1:{listener.getsockname()[1]}", "ranker", 0.5)
        assert time.monotonic() - started < 2.0
    finally:
        listener.close()


def test_a_closed_port_and_a_bad_url_are_unreachable() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ServingUnreachable):
        get_model_status(f"http://127.0.0.1:{port}", "ranker", 0.5)
    with pytest.raises(ServingUnreachable, match="not an http"):
        get_model_status("ftp://127.0.0.1/x", "ranker")
    with pytest.raises(ServingUnreachable):
        get_model_status("http://127.0.0.1:notaport/x", "ranker")
