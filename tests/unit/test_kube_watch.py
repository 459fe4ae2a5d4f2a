"""The watch thread's own behaviour around its connection (its lists and events
against the real API server: tests/integration/test_owned_watches.py)."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from kubernetes import client

from tfops.clients.kube_watch import KindWatch
from tfops.owned import BY_KIND
from tfops.watched import OWNED_SELECTOR, OwnedIndex


def test_a_stopped_watch_ends_quietly_when_its_connection_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping waits for the stream's next line; an API server going away at
    that moment (the operator shutting down with the cluster) is no failure to
    report or retry."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked, gone = threading.Event(), threading.Event()

    def serve() -> None:
        # The first request is held unanswered; then the server is gone: that
        # connection and every retry the client makes are closed unanswered.
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            asked.set()
            gone.wait()
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{listener.getsockname()[1]}")
    watch = KindWatch(
        client.ApiClient(configuration),
        BY_KIND["ConfigMap"],
        "default",
        OWNED_SELECTOR,
        OwnedIndex(),
    )
    thread = threading.Thread(target=watch.run, daemon=True)
    with caplog.at_level(logging.INFO, logger="tfops.watch"):
        thread.start()
        assert asked.wait(10), "the watch never asked"
        watch.stop()
        gone.set()
        thread.join(10)
    listener.close()
    assert not thread.is_alive(), "the stopped watch kept retrying"
    ours = [r for r in caplog.records if r.name == "tfops.watch" and r.levelno >= logging.WARNING]
    assert not ours, caplog.text
