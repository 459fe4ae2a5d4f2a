"""A STAND-IN for one `tensorflow_model_server` process, for tests only.

No container runtime exists here, so kwok's pods run nothing. This module imitates
what TF Serving 2.19.1 does with its flags, its models.config and its model
directories, as read from its source (the project's TF Serving reference, §8;
`sc` is tensorflow_serving/model_servers/server_core.cc). Each behaviour cites
its source, and tests/unit/test_standin_conformance.py has a test per behaviour.
Where the real behaviour is not known exactly, the stand-in is stricter than the
real server, never more lenient: a stand-in that forgives what TF Serving refuses
hides bugs from every test built on it. The strictnesses are marked STRICTER.

The process is a pure state machine advanced by `advance(now)`; the clock, the
model store and the loader are given to it, so tests drive it with a fake clock.
`tfops.testing.standin.server` runs one per pod behind a REST front end.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

OK = ("OK", "")
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


# -- flags ------------------------------------------------------------------------


class BadFlag(ValueError):
    """A flag value TF Serving's parser refuses: the process exits at once."""


def _bool(text: str) -> bool:
    # tensorflow::Flag accepts true/false/1/0 (util/command_line_flags.cc).
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise BadFlag(f"Illegal value {text!r} for a bool flag")


def _int(text: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", text):
        raise BadFlag(f"Illegal value {text!r} for an int flag")
    return int(text)


def _channel_arguments(text: str) -> tuple[tuple[str, str], ...]:
    # server.cc:99-109 splits on ',' then '=' and reads key_val[1] unchecked: an
    # entry without '=' is undefined behaviour there, so the stand-in refuses it.
    pairs = []
    for entry in text.split(","):
        key, equals, value = entry.partition("=")
        if not key or not equals:
            raise BadFlag(f"Malformed --grpc_channel_arguments entry {entry!r}: needs key=value")
        pairs.append((key, value))
    return tuple(pairs)


@dataclass(frozen=True)
class Options:
    """The flags the stand-in honours, with TF Serving's own defaults (server.h:60-80)."""

    model_config_file: str = ""
    config_poll_seconds: int = 0  # --model_config_file_poll_wait_seconds: 0 reads once
    version_poll_seconds: int = 1  # --file_system_poll_wait_seconds
    max_load_retries: int = 5  # --max_num_load_retries
    load_retry_interval_seconds: float = 60.0  # --load_retry_interval_micros
    allow_labels_for_unavailable: bool = False  # --allow_version_labels_for_...
    grpc_channel_arguments: tuple[tuple[str, str], ...] = ()
    # Unknown flags are printed and ignored (model_servers/main.cc:333-335).
    ignored: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: list[str]) -> Options:
        """Parse `--name=value` flags; raises BadFlag as TF Serving's parser exits."""
        parsers: dict[str, tuple[str, Callable[[str], Any]]] = {
            "model_config_file": ("model_config_file", str),
            "model_config_file_poll_wait_seconds": ("config_poll_seconds", _int),
            "file_system_poll_wait_seconds": ("version_poll_seconds", _int),
            "max_num_load_retries": ("max_load_retries", _int),
            "load_retry_interval_micros": (
                "load_retry_interval_seconds",
                lambda text: _int(text) / 1e6,
            ),
            "allow_version_labels_for_unavailable_models": (
                "allow_labels_for_unavailable",
                _bool,
            ),
            "grpc_channel_arguments": ("grpc_channel_arguments", _channel_arguments),
        }
        values: dict[str, Any] = {}
        ignored = []
        for arg in args:
            name, _, value = arg.removeprefix("--").partition("=")
            if name in parsers:
                key, parse = parsers[name]
                values[key] = parse(value)
            else:
                ignored.append(arg)
        return cls(**values, ignored=tuple(ignored))


@dataclass(frozen=True)
class Timing:
    """The test's knobs: how long loads take, and overrides of the poll and retry
    periods so tests need not wait TF Serving's minutes. None: the flag's value.
    These only shorten waits; they make nothing succeed that would fail."""

    load_seconds: float = 0.0
    unload_seconds: float = 0.0
    config_poll_seconds: float | None = None
    version_poll_seconds: float | None = None
    retry_interval_seconds: float | None = None


# -- the model store and the loader ---------------------------------------------------


class ModelStore:
    """Where base paths point: /models/x is <root>/x (the mounted volume), gs://b/x
    is <root>/gs/b/x. Other schemes are not built into the official images."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, base_path: str) -> Path:
        if base_path.startswith("gs://"):
            return self.root / "gs" / base_path.removeprefix("gs://")
        return self.root / base_path.removeprefix("/models/")

    def versions(self, base_path: str) -> list[int] | str:
        """The numeric version directories under a base path, or the error TF
        Serving logs instead of emitting any aspired versions."""
        scheme = base_path.split("://", 1)[0] if "://" in base_path else ""
        if scheme and scheme != "gs":
            # Only gs:// and local paths are built in; s3 left in 2.7.0
            # (file_system_storage_path_source.cc:257-261, model_servers/BUILD:543).
            return (
                f"UNIMPLEMENTED: File system scheme '{scheme}' not implemented "
                f"(file: '{base_path}')"
            )
        if not scheme and not base_path.startswith("/models/"):
            return f"Could not find base path {base_path}"  # nothing else is mounted
        root = self.local_path(base_path)
        if not root.is_dir():
            # file_system_storage_path_source.cc:250-262
            return f"Could not find base path {base_path} for servable"
        return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


class Loader(Protocol):
    """Loads one version directory; the future's exception is the load's error."""

    def load(self, path: Path) -> concurrent.futures.Future[Any]: ...


def error_status(error: BaseException) -> tuple[str, str]:
    """(error_code, error_message) as TF Serving's REST status shows them."""
    code = getattr(error, "tfs_code", None)
    if code is None:
        name = type(error).__name__.removesuffix("Error")
        code = re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() if name else "UNKNOWN"
        if code not in {
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
        }:
            code = "UNKNOWN"
    return code, str(error)


class LoadFailed(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.tfs_code = code


class DirectoryLoader:
    """A load succeeds when the version directory holds a SavedModel graph file,
    as TF's loader first checks (no TensorFlow needed: benchmarks and the demo)."""

    def load(self, path: Path) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            future.set_result(None)
        else:
            future.set_exception(
                LoadFailed(
                    "NOT_FOUND",
                    "Could not find SavedModel .pb or .pbtxt at supplied export directory "
                    f"path: {path}",
                )
            )
        return future


# -- one process ---------------------------------------------------------------------


@dataclass
class Version:
    number: int
    state: str = START
    status: tuple[str, str] = OK
    aspired: bool = True
    failures: int = 0
    attempt: concurrent.futures.Future[Any] | None = None
    attempt_started: float = 0.0
    retry_at: float | None = None
    unload_at: float = 0.0
    servable: Any = None


@dataclass
class Model:
    name: str
    base_path: str
    policy: Any  # FileSystemStoragePathSourceConfig.ServableVersionPolicy
    versions: dict[int, Version] = field(default_factory=dict)
    in_source: bool = True  # still in the applied config (else only END states remain)
    source_error: str | None = None  # why no aspired versions were emitted


class Process:
    """One tensorflow_model_server: its applied config, labels and versions."""

    def __init__(
        self,
        options: Options,
        read_config: Callable[[], str | None],
        store: ModelStore,
        loader: Loader,
        now: float,
        timing: Timing | None = None,
    ) -> None:
        self.options = options
        self.read_config = read_config
        self.store = store
        self.loader = loader
        self.timing = timing or Timing()
        self.started_at = now
        self.ports_open = False  # server.cc:330 vs :415
        self.exit_message: str | None = None
        self.log: list[str] = []
        self.reload_errors: list[str] = []
        self.models: dict[str, Model] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.applied_text: str | None = None
        self.last_reload_ok = True
        # Models a reload waits for (the poll thread blocks until they load: sc:410).
        self.awaiting: set[str] = set()
        self.next_config_poll: float | None = None
        # A test's knob: the config poll stops reading models.config, as field
        # reports saw it wedge on a bad path and ignore later fixes. Never lenient:
        # it only withholds what the real server would apply.
        self.config_poll_wedged = False
        self.next_version_poll = now  # the first listing happens at start
        # Before this, advance() has nothing to do (a cheap skip for many pods).
        self.idle_until = 0.0
        self._start(now)

    # -- periods (flags, or the test's shorter knobs) --

    def _config_poll(self) -> float:
        knob = self.timing.config_poll_seconds
        period = self.options.config_poll_seconds
        return period if knob is None or period == 0 else knob

    def _version_poll(self) -> float:
        knob = self.timing.version_poll_seconds
        return float(self.options.version_poll_seconds if knob is None else knob)

    def _retry_interval(self) -> float:
        knob = self.timing.retry_interval_seconds
        return self.options.load_retry_interval_seconds if knob is None else knob

    # -- start-up and reloads --

    def _exit(self, message: str) -> None:
        # main.cc:342-345: a failed start-up logs and exits -1; nothing answers.
        self.exit_message = message
        self.ports_open = False
        self.log.append(f"EXIT: {message}")

    def _parse(self, text: str) -> model_server_config_pb2.ModelServerConfig | str:
        config = model_server_config_pb2.ModelServerConfig()
        try:
            text_format.Parse(text, config)
        except text_format.ParseError as error:
            return f"INVALID_ARGUMENT: Invalid protobuf file: {error}"
        names = [m.name for m in config.model_config_list.config]
        if len(set(names)) != len(names):
            return "INVALID_ARGUMENT: Illegal to list model names multiple times in config list"
        for entry in config.model_config_list.config:
            if entry.model_platform not in ("", "tensorflow"):
                return f"INVALID_ARGUMENT: Unsupported model platform {entry.model_platform}"
        return config

    def _label_error(self, config: Any) -> str | None:
        """The label check TF Serving makes before it adds or loads anything
        (sc:528-548). With --allow_version_labels_for_unavailable_models a new label
        (or one that keeps its version) may name an unloaded version; moving a label
        always needs the target AVAILABLE."""
        for entry in config.model_config_list.config:
            current = self.labels.get(entry.name, {})
            for label, version in sorted(entry.version_labels.items()):
                moving = label in current and current[label] != version
                if self.options.allow_labels_for_unavailable and not moving:
                    continue
                model = self.models.get(entry.name)
                known = model.versions.get(version) if model else None
                if known is None or known.state != AVAILABLE:
                    return (
                        f"FAILED_PRECONDITION: Request to assign label to version {version} "
                        f"of model {entry.name}, which is not currently available for inference"
                    )
        return None

    def _apply(self, config: Any, text: str) -> None:
        """Take `config` as the whole truth (sc:402-412)."""
        listed = {entry.name: entry for entry in config.model_config_list.config}
        self.labels = {name: dict(e.version_labels) for name, e in listed.items()}
        for name, model in self.models.items():
            if name not in listed and model.in_source:
                # A removed model is unloaded; its END states stay (sc:402-404).
                model.in_source = False
                for version in model.versions.values():
                    version.aspired = False
        new = set()
        for name, entry in listed.items():
            policy = entry.model_version_policy
            model = self.models.get(name)
            if model is None or not model.in_source:
                new.add(name)
            if model is None:
                model = self.models[name] = Model(name, entry.base_path, policy)
            model.base_path, model.policy, model.in_source = entry.base_path, policy, True
        self.applied_text = text
        if self.ports_open:
            # A reload waits for new models; changed versions wait for the next
            # listing of their directories (UpdateConfig does not poll: the source's
            # next poll emits them).
            self.awaiting = new

    def _start(self, now: float) -> None:
        text = self.read_config()
        if text is None:
            self._exit(f"NOT_FOUND: {self.options.model_config_file}")
            return
        parsed = self._parse(text)
        if isinstance(parsed, str):
            self._exit(parsed)
            return
        # The label check runs on the first config too, before any model loads
        # (sc:477-489): a label on a version not yet loaded stops the start-up.
        refused = self._label_error(parsed)
        if refused:
            self._exit(refused)
            return
        self._apply(parsed, text)
        self._poll_versions(now)

    def _reload(self, now: float) -> None:
        text = self.read_config()
        if text is None or (text == self.applied_text and self.last_reload_ok):
            return
        parsed = self._parse(text)
        if isinstance(parsed, str):
            # A parse error keeps the old config (server.cc:163-178 logs and goes on).
            self._reload_failed(parsed)
            return
        refused = self._label_error(parsed)
        if refused:
            # All or nothing (sc:477-489): no model added, no version loaded; every
            # later poll of the same file fails the same way.
            self._reload_failed(refused)
            return
        self.last_reload_ok = True
        self._apply(parsed, text)

    def _reload_failed(self, message: str) -> None:
        self.last_reload_ok = False
        if not self.reload_errors or self.reload_errors[-1] != message:
            self.reload_errors.append(message)
            self.log.append(f"PollFilesystemAndReloadConfig failed to ReloadConfig: {message}")

    # -- version directories and loads --

    def _poll_versions(self, now: float) -> None:
        for model in self.models.values():
            if not model.in_source:
                continue
            found = self.store.versions(model.base_path)
            if isinstance(found, str):
                # Logged; no aspired-versions list is emitted (the base path may be
                # transiently missing), so a start-up waits forever (§8.3, §6.4).
                model.source_error = found
                continue
            model.source_error = None
            aspired = set(self._select(model.policy, found))
            for number, version in model.versions.items():
                version.aspired = number in aspired
            for number in aspired:
                known = model.versions.get(number)
                if known is None:
                    model.versions[number] = Version(number)
                elif known.state == END and known.status == OK:
                    # A version unloaded before and aspired again loads anew.
                    model.versions[number] = Version(number)
        self.next_version_poll = now + self._version_poll()

    @staticmethod
    def _select(policy: Any, found: list[int]) -> list[int]:
        choice = policy.WhichOneof("policy_choice")
        if choice == "specific":
            return [v for v in policy.specific.versions if v in found]
        if choice == "all":
            return found
        count = policy.latest.num_versions if choice == "latest" else 1
        return found[-count:] if count else []

    def _loading(self) -> list[Version]:
        return [v for m in self.models.values() for v in m.versions.values() if v.state == LOADING]

    def _step_versions(self, now: float) -> None:
        for model in self.models.values():
            for version in model.versions.values():
                self._step_load(model, version, now)
                if version.state == UNLOADING and now >= version.unload_at:
                    version.state, version.servable = END, None
            self._unload_retired(model, now)
        # Loads run one at a time once the server is up (--num_load_threads=0: on
        # the manager thread, retry sleeps included); the initial load is parallel
        # (server_core.cc ConnectSourcesWithFastInitialLoad).
        for model in self.models.values():
            waiting = sorted(
                (v for v in model.versions.values() if v.state == START and v.aspired),
                key=lambda v: -v.number,  # the highest new version first
            )
            for version in waiting:
                if self.ports_open and self._loading():
                    return
                self._begin_attempt(model, version, now)

    def _begin_attempt(self, model: Model, version: Version, now: float) -> None:
        version.state = LOADING
        version.retry_at = None
        version.attempt_started = now
        version.attempt = self.loader.load(
            self.store.local_path(model.base_path) / str(version.number)
        )

    def _step_load(self, model: Model, version: Version, now: float) -> None:
        if version.state != LOADING:
            return
        if version.retry_at is not None:
            if not version.aspired:
                # Retries of a version no longer wanted are cancelled.
                version.state = END
            elif now >= version.retry_at:
                self._begin_attempt(model, version, now)
            return
        attempt = version.attempt
        if attempt is None or not attempt.done():
            return
        if now - version.attempt_started < self.timing.load_seconds:
            return
        error = attempt.exception()
        if error is None:
            version.state, version.servable = AVAILABLE, attempt.result()
            return
        # A failed load is retried --max_num_load_retries times, --load_retry_
        # interval_micros apart, staying LOADING (loader_harness.cc:75-86,
        # retrier.cc:35-43); then END with its error, kept for the process's life
        # (servable_state_monitor.cc:160-167).
        version.failures += 1
        version.status = error_status(error)
        if version.failures > self.options.max_load_retries or not version.aspired:
            version.state = END
        else:
            version.retry_at = now + self._retry_interval()

    def _unload_retired(self, model: Model, now: float) -> None:
        """AvailabilityPreservingPolicy: a version no longer aspired is unloaded once
        an aspired one is AVAILABLE, or when none is loading (nothing to wait for)."""
        aspired = [v for v in model.versions.values() if v.aspired and v.state != END]
        retired = [v for v in model.versions.values() if not v.aspired and v.state == AVAILABLE]
        if not retired:
            return
        serving = any(v.state == AVAILABLE for v in aspired)
        pending = any(v.state in (START, LOADING) for v in aspired)
        if not aspired or serving or not pending or len(retired) > 1:
            for version in retired:
                version.state = UNLOADING
                version.unload_at = now + self.timing.unload_seconds

    # -- the clock --

    def advance(self, now: float) -> None:
        """Run everything due by `now`."""
        self._advance(now)
        self.idle_until = self._next_due(now)

    def _next_due(self, now: float) -> float:
        if self.exit_message is not None:
            return float("inf")
        busy = any(
            v.state in (START, LOADING, UNLOADING)
            for m in self.models.values()
            for v in m.versions.values()
        )
        if busy or not self.ports_open or self.awaiting:
            return now
        return min(self.next_version_poll, self.next_config_poll or float("inf"))

    def _advance(self, now: float) -> None:
        if self.exit_message is not None:
            return
        if now >= self.next_version_poll:
            self._poll_versions(now)
        self._step_versions(now)
        if not self.ports_open:
            self._check_started(now)
            return
        if self.awaiting:
            self._check_awaited()
            if self.awaiting:
                return
        if self.next_config_poll is not None and now >= self.next_config_poll:
            if not self.config_poll_wedged:
                self._reload(now)
            self.next_config_poll = now + self._config_poll()
            self._step_versions(now)

    def _check_started(self, now: float) -> None:
        failed = []
        for model in self.models.values():
            aspired = [v for v in model.versions.values() if v.aspired]
            failed += [
                f"{{name: {model.name} version: {v.number}}} due to error: {v.status[1]}"
                for v in aspired
                if v.state == END and v.status != OK
            ]
        if failed:
            # sc:299-330: the initial load failing fails the whole server.
            self._exit(f"{len(failed)} model(s) did not become available: {{{', '.join(failed)}}}")
            return
        for model in self.models.values():
            aspired = [v for v in model.versions.values() if v.aspired]
            # STRICTER: every aspired version AVAILABLE (TF Serving waits for the
            # latest of each model); no versions, or a base path in error, waits
            # forever (ports never open).
            if model.source_error or not aspired or any(v.state != AVAILABLE for v in aspired):
                return
        self.ports_open = True
        if self.options.config_poll_seconds > 0:
            self.next_config_poll = now + self._config_poll()

    def _check_awaited(self) -> None:
        for name in list(self.awaiting):
            model = self.models[name]
            versions = list(model.versions.values())
            if any(v.state == AVAILABLE for v in versions):
                self.awaiting.discard(name)
            elif any(v.aspired and v.state == END for v in versions):
                self.awaiting.discard(name)
                self._reload_failed(f"1 model(s) did not become available: {name}")

    # -- what the REST API reads --

    def version_status(self, name: str) -> list[dict[str, Any]] | None:
        """GET /v1/models/NAME's entries, newest first; None for a model TF Serving
        has never been told of."""
        model = self.models.get(name)
        if model is None or not model.versions:
            return None
        return [
            {
                "version": str(v.number),
                "state": v.state,
                "status": {"error_code": v.status[0], "error_message": v.status[1]},
            }
            for v in sorted(model.versions.values(), key=lambda v: -v.number)
        ]

    def servable(self, name: str, version: int | None, label: str | None) -> tuple[int, Any]:
        """(version, loaded servable) a predict or metadata request addresses, or
        raises Refused with TF Serving's HTTP code and error text."""
        model = self.models.get(name)
        if label is not None:
            labels = self.labels.get(name, {})
            if label not in labels:
                # http_rest_api_handler: an unknown label is InvalidArgument (400).
                raise Refused(400, f"Unrecognized servable version label: {label}")
            version = labels[label]
        available = [v for v in model.versions.values() if v.state == AVAILABLE] if model else []
        wanted = version if version is not None else max((v.number for v in available), default=-1)
        match = next((v for v in available if v.number == wanted), None)
        if match is None:
            what = f"Specific({name}, {wanted})" if version is not None else f"Latest({name})"
            raise Refused(404, f"Servable not found for request: {what}")
        return match.number, match.servable


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
