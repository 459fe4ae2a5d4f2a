"""The TF Serving stand-in behaves as TF Serving 2.19.1 does (the reference's §8),
driven directly with a fake clock: one test per behaviour, named after it. The
table in docs/tfserving-standin.md maps each behaviour to its source line and test."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfops.testing.standin.server import TFServingStandIn
from tfops.testing.standin.tfserving import (
    AVAILABLE,
    END,
    LOADING,
    BadFlag,
    DirectoryLoader,
    ModelStore,
    Options,
    Process,
    Refused,
    Timing,
)

FLAGS = [
    "--model_config_file=/etc/tfops/models.config",
    "--model_config_file_poll_wait_seconds=15",
    "--file_system_poll_wait_seconds=15",
    "--max_num_load_retries=2",
    "--load_retry_interval_micros=10000000",
]
WITH_LABELS = [*FLAGS, "--allow_version_labels_for_unavailable_models=true"]


def config(*models: dict[str, Any]) -> str:
    message = model_server_config_pb2.ModelServerConfig()
    for model in models:
        entry = message.model_config_list.config.add()
        entry.name = model["name"]
        entry.base_path = model.get("base", f"/models/{model['name']}")
        entry.model_platform = "tensorflow"
        if "specific" in model:
            entry.model_version_policy.specific.versions.extend(model["specific"])
        elif "latest" in model:
            entry.model_version_policy.latest.num_versions = model["latest"]
        for label, version in model.get("labels", {}).items():
            entry.version_labels[label] = version
    return str(text_format.MessageToString(message))


class Server:
    """One process, its models.config (a file the test rewrites) and a fake clock."""

    def __init__(
        self, root: Path, text: str, args: list[str], timing: Timing | None = None
    ) -> None:
        self.root = root
        self.text: str | None = text
        self.now = 0.0
        self.process = Process(
            Options.from_args(args),
            lambda: self.text,
            ModelStore(root),
            DirectoryLoader(),
            0.0,
            timing or Timing(),
        )
        self.process.advance(0.0)

    def versions(self, base: str, *numbers: int, broken: bool = False) -> None:
        for number in numbers:
            directory = self.root / base.removeprefix("/models/") / str(number)
            directory.mkdir(parents=True, exist_ok=True)
            if not broken:
                (directory / "saved_model.pb").write_bytes(b"graph")

    def run(self, seconds: float, step: float = 0.5) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.process.advance(self.now)

    def states(self, model: str) -> dict[int, str]:
        return {int(e["version"]): e["state"] for e in self.process.version_status(model) or []}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path


def _server(store: Path, text: str, args: list[str] = WITH_LABELS, **versions: Any) -> Server:
    for base, numbers in versions.items():
        for number in numbers:
            directory = store / base / str(number)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "saved_model.pb").write_bytes(b"graph")
    return Server(store, text, args)


# -- §8.1 labels at start-up ------------------------------------------------------------------


def test_a_label_in_the_first_config_stops_start_up_without_the_flag(store: Path) -> None:
    server = _server(
        store, config({"name": "a", "specific": [1], "labels": {"stable": 1}}), FLAGS, a=[1]
    )
    assert server.process.exit_message is not None
    assert "Request to assign label to version 1 of model a" in server.process.exit_message
    assert not server.process.ports_open
    server.run(60)
    assert not server.process.ports_open


def test_a_new_label_may_name_a_loading_version_with_the_flag(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1], "labels": {"stable": 1}}), a=[1])
    server.run(1)
    assert server.process.ports_open and server.process.exit_message is None
    assert server.process.servable("a", None, "stable")[0] == 1


# -- §8.1/§8.2 reloads ------------------------------------------------------------------------


def test_moving_a_label_needs_the_target_available_even_with_the_flag(store: Path) -> None:
    server = _server(
        store, config({"name": "a", "specific": [1], "labels": {"stable": 1}}), a=[1, 2]
    )
    server.run(1)
    server.text = config({"name": "a", "specific": [1, 2], "labels": {"stable": 2}})
    server.run(20)
    assert any("version 2 of model a" in e for e in server.process.reload_errors)
    # All or nothing: version 2 was not even loaded, so the label can never move.
    assert server.states("a") == {1: AVAILABLE}
    server.run(60)
    assert server.states("a") == {1: AVAILABLE}
    assert server.process.labels["a"] == {"stable": 1}


def test_a_refused_reload_applies_nothing_and_a_fixed_config_recovers(store: Path) -> None:
    server = _server(
        store, config({"name": "a", "specific": [1], "labels": {"stable": 1}}), a=[1, 2], b=[5]
    )
    server.run(1)
    server.text = config(
        {"name": "a", "specific": [1, 2], "labels": {"stable": 2}}, {"name": "b", "latest": 1}
    )
    server.run(40)
    assert server.process.version_status("b") is None  # b was not added
    errors = len(server.process.reload_errors)
    assert errors == 1  # reported once, though every poll fails again
    server.text = config(
        {"name": "a", "specific": [1, 2], "labels": {"stable": 1}}, {"name": "b", "latest": 1}
    )
    server.run(40)
    assert server.states("b") == {5: AVAILABLE}
    assert server.states("a") == {2: AVAILABLE, 1: AVAILABLE}


def test_a_reload_waits_for_new_models_before_the_next_poll(store: Path) -> None:
    server = _server(store, config({"name": "a", "latest": 1}), a=[1])
    server.run(1)
    server.text = config({"name": "a", "latest": 1}, {"name": "s3m", "base": "s3://b/m"})
    server.run(20)
    server.text = config({"name": "a", "latest": 1}, {"name": "c", "latest": 1})
    (store / "c" / "1").mkdir(parents=True)
    (store / "c" / "1" / "saved_model.pb").write_bytes(b"graph")
    server.run(120)
    # Still blocked on the model that can never load: c is never read.
    assert server.process.version_status("c") is None
    assert server.process.awaiting == {"s3m"}


# -- §8.3 file systems ------------------------------------------------------------------------


def test_s3_is_unimplemented_and_start_up_waits_forever(store: Path) -> None:
    server = _server(store, config({"name": "a", "base": "s3://bucket/a"}))
    server.run(600, step=5)
    assert not server.process.ports_open and server.process.exit_message is None
    assert server.process.models["a"].source_error.startswith(
        "UNIMPLEMENTED: File system scheme 's3' not implemented"
    )


def test_a_missing_base_path_makes_start_up_wait_forever(store: Path) -> None:
    server = _server(store, config({"name": "a"}))
    server.run(120, step=5)
    assert not server.process.ports_open
    assert "Could not find base path /models/a" in (server.process.models["a"].source_error or "")


def test_gs_paths_load_from_the_store(store: Path) -> None:
    server = _server(store, config({"name": "a", "base": "gs://bucket/a"}), **{"gs/bucket/a": [3]})
    server.run(1)
    assert server.states("a") == {3: AVAILABLE}


# -- §8.4 / §8.5 load failures ----------------------------------------------------------------


def test_a_failed_load_is_retried_then_ends_with_its_error_and_stays(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1]}), a=[1])
    server.run(1)
    server.versions("/models/a", 2, broken=True)
    server.text = config({"name": "a", "specific": [1, 2]})
    server.run(31)  # the config poll at 15 s, then the next directory listing at 30 s
    assert server.states("a")[2] == LOADING
    server.run(15)  # two retries, 10 s apart: still LOADING after the first
    assert server.states("a")[2] == LOADING
    server.run(10)
    entry = next(e for e in server.process.version_status("a") or [] if e["version"] == "2")
    assert entry["state"] == END
    assert entry["status"]["error_code"] == "NOT_FOUND"
    assert "Could not find SavedModel" in entry["status"]["error_message"]
    server.run(600, step=10)  # END for the life of the process: never retried
    assert server.states("a") == {2: END, 1: AVAILABLE}


def test_the_retry_count_and_interval_come_from_the_flags(store: Path) -> None:
    args = [*WITH_LABELS, "--max_num_load_retries=5", "--load_retry_interval_micros=60000000"]
    server = _server(store, config({"name": "a", "specific": [1]}), args, a=[1])
    server.run(1)
    server.versions("/models/a", 2, broken=True)
    server.text = config({"name": "a", "specific": [1, 2]})
    server.run(30 + 4 * 60)
    assert server.states("a")[2] == LOADING  # TF Serving's defaults: ~5 minutes
    server.run(90)
    assert server.states("a")[2] == END


def test_a_failed_initial_load_exits_the_server(store: Path) -> None:
    server = Server(store, config({"name": "a", "specific": [1]}), WITH_LABELS)
    server.versions("/models/a", 1, broken=True)
    server.run(60)
    assert server.process.exit_message is not None
    assert "1 model(s) did not become available" in server.process.exit_message
    assert not server.process.ports_open


def test_an_unloaded_version_stays_listed_as_end(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1]}), a=[1, 2])
    server.run(1)
    server.text = config({"name": "a", "specific": [2]})
    server.run(40)
    assert server.states("a") == {2: AVAILABLE, 1: END}


# -- §8.6 ports -------------------------------------------------------------------------------


def test_ports_open_only_after_the_initial_config_has_loaded(store: Path) -> None:
    (store / "a" / "1").mkdir(parents=True)
    (store / "a" / "1" / "saved_model.pb").write_bytes(b"graph")
    server = Server(store, config({"name": "a"}), WITH_LABELS, Timing(load_seconds=30))
    server.run(29)
    assert not server.process.ports_open
    server.run(2)
    assert server.process.ports_open


# -- §8.7 polling -----------------------------------------------------------------------------


def test_models_config_is_read_only_at_the_poll_period(store: Path) -> None:
    server = _server(store, config({"name": "a"}), a=[1], b=[1])
    server.run(1)
    server.text = config({"name": "a"}, {"name": "b"})
    server.run(10)
    assert server.process.version_status("b") is None
    server.run(25)  # the config poll at 15 s, then the listing of b's versions
    assert server.states("b") == {1: AVAILABLE}


def test_a_wedged_config_poll_applies_nothing_new_and_the_operator_sees_it(store: Path) -> None:
    """The test knob for field reports' wedged polling: later configs are ignored,
    and what the pod reports differs from models.config as the operator judges it."""
    from tfops.model import parse_spec
    from tfops.model_status import parse_model_status
    from tfops.readiness import config_differences

    server = _server(store, config({"name": "a"}), a=[1], b=[1])
    server.run(1)
    server.process.config_poll_wedged = True
    server.text = config({"name": "a"}, {"name": "b"})
    server.run(120, step=5)
    assert server.process.version_status("b") is None
    spec = parse_spec({"models": [{"name": n, "basePath": f"gs://x/{n}"} for n in ("a", "b")]})
    answer = {
        name: parse_model_status({"model_version_status": server.process.version_status(name)})
        if server.process.version_status(name)
        else []
        for name in ("a", "b")
    }
    assert config_differences(spec, answer, {}) == ["model b unknown to it"]


def test_without_a_poll_period_models_config_is_read_once(store: Path) -> None:
    args = [a for a in WITH_LABELS if "model_config_file_poll" not in a]
    server = _server(store, config({"name": "a"}), args, a=[1], b=[1])
    server.run(1)
    server.text = config({"name": "a"}, {"name": "b"})
    server.run(300, step=5)
    assert server.process.version_status("b") is None


def test_new_version_directories_are_seen_at_the_listing_period(store: Path) -> None:
    server = _server(store, config({"name": "a", "latest": 1}), a=[1])
    server.run(1)
    server.versions("/models/a", 2)
    server.run(10)
    assert server.states("a") == {1: AVAILABLE}
    server.run(10)
    assert server.states("a") == {2: AVAILABLE, 1: END}


def test_an_empty_base_path_unloads_every_version(store: Path) -> None:
    server = _server(store, config({"name": "a", "latest": 1}), a=[1])
    server.run(1)
    (store / "a" / "1" / "saved_model.pb").unlink()
    (store / "a" / "1").rmdir()
    server.run(20)
    assert server.states("a") == {1: END}


# -- version transitions ----------------------------------------------------------------------


def test_the_old_version_serves_until_the_new_one_is_available(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1]}), a=[1, 2])
    server.process.timing = Timing(load_seconds=20)
    server.run(25)
    server.text = config({"name": "a", "specific": [2]})
    server.run(35)  # the config poll at 30 s, the listing at 45 s, then 20 s of loading
    assert server.states("a") == {2: LOADING, 1: AVAILABLE}
    server.run(10)
    assert server.states("a") == {2: AVAILABLE, 1: END}


def test_when_the_only_new_version_fails_the_old_one_is_unloaded(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1]}), a=[1])
    server.run(1)
    server.versions("/models/a", 2, broken=True)
    server.text = config({"name": "a", "specific": [2]})
    server.run(90)
    assert server.states("a") == {2: END, 1: END}


def test_loads_after_start_up_run_one_at_a_time(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1]}), a=[1, 2, 3])
    server.process.timing = Timing(load_seconds=10)
    server.run(11)
    server.text = config({"name": "a", "specific": [1, 2, 3]})
    server.run(25)  # read at 15 s, listed at 30 s: version 3 loads for 10 s, 2 waits
    states = server.states("a")
    assert sorted(states.values()) == sorted([AVAILABLE, LOADING, "START"])
    assert states[3] == LOADING  # the highest version first


# -- flags (§8.12) ----------------------------------------------------------------------------


def test_unknown_flags_are_ignored_and_malformed_values_refused() -> None:
    options = Options.from_args([*WITH_LABELS, "--no_such_flag=1"])
    assert options.ignored == ("--no_such_flag=1",)
    assert options.allow_labels_for_unavailable and options.max_load_retries == 2
    with pytest.raises(BadFlag):
        Options.from_args(["--max_num_load_retries=two"])


def test_grpc_channel_arguments_need_key_value_entries() -> None:
    options = Options.from_args(["--grpc_channel_arguments=grpc.max_connection_age_ms=5000,a=b"])
    assert options.grpc_channel_arguments == (("grpc.max_connection_age_ms", "5000"), ("a", "b"))
    # server.cc reads key_val[1] unchecked: undefined behaviour there, refused here.
    for bad in ("grpc.max_connection_age_ms", "a=1,,b=2", "=5"):
        with pytest.raises(BadFlag):
            Options.from_args([f"--grpc_channel_arguments={bad}"])


# -- the REST API (§5) ------------------------------------------------------------------------


def test_versions_are_listed_newest_first(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1, 7, 3]}), a=[1, 3, 7])
    server.run(1)
    assert [e["version"] for e in server.process.version_status("a") or []] == ["7", "3", "1"]


def test_an_unknown_label_is_400_and_an_unknown_version_404(store: Path) -> None:
    server = _server(store, config({"name": "a", "specific": [1], "labels": {"stable": 1}}), a=[1])
    server.run(1)
    with pytest.raises(Refused) as label:
        server.process.servable("a", None, "canary")
    assert label.value.code == 400
    with pytest.raises(Refused) as version:
        server.process.servable("a", 9, None)
    assert version.value.code == 404 and "Specific(a, 9)" in str(version.value)
    with pytest.raises(Refused) as model:
        server.process.servable("nope", None, None)
    assert model.value.code == 404 and "Latest(nope)" in str(model.value)


@pytest.fixture
def rest(store: Path) -> Iterator[tuple[TFServingStandIn, Server]]:
    """The HTTP front end over one process (no cluster: the process is put in place)."""
    standin = TFServingStandIn(None, store, loader=DirectoryLoader())
    standin._threads = standin._threads[:1]  # the HTTP server only
    standin.start()
    server = _server(store, config({"name": "a", "specific": [1], "labels": {"stable": 1}}), a=[1])
    server.run(1)
    standin.processes[("ns", "pod")] = (("uid", 0), server.process)
    yield standin, server
    standin.stop()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_rest_answers_in_tf_servings_shapes(rest: tuple[TFServingStandIn, Server]) -> None:
    standin, _ = rest
    base = standin.url_template.format(namespace="ns", pod="pod")
    status, body = _get(f"{base}/v1/models/a")
    assert status == 200 and body["model_version_status"][0]["state"] == AVAILABLE
    # The status route ignores a label and lists every version.
    assert _get(f"{base}/v1/models/a/labels/whatever")[0] == 200
    assert _get(f"{base}/v1/models/a/versions/9")[0] == 404
    assert _get(f"{base}/v1/models/b")[0] == 404
    assert _get(f"{base}/v1/models/a/bogus/route")[0] == 400


def test_closed_ports_drop_the_connection(rest: tuple[TFServingStandIn, Server]) -> None:
    standin, server = rest
    server.process.ports_open = False
    base = standin.url_template.format(namespace="ns", pod="pod")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(f"{base}/v1/models/a")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(standin.url_template.format(namespace="ns", pod="other") + "/v1/models/a")


def test_connections_wait_in_a_backlog_as_at_tf_servings_listeners(store: Path) -> None:
    """Each pod's TF Serving listens with libevent's backlog of 128; the one
    listener standing in for every pod holds at least two pods' worth while
    nothing accepts (socketserver's default of 5 refused the rest)."""
    standin = TFServingStandIn(None, store, loader=DirectoryLoader())  # never started
    address = standin._server.server_address
    connections = []
    try:
        for _ in range(2 * 128):
            connections.append(socket.create_connection(address, timeout=2))
    finally:
        for connection in connections:
            connection.close()
        standin._server.server_close()
    assert len(connections) == 2 * 128
