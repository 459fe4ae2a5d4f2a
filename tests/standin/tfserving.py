"""A STAND-IN for TensorFlow Serving's REST API, for tests only.

No container runtime exists here, so kwok's pods run nothing. This stand-in
answers, on 127.0.0.1, what each pod's `tensorflow_model_server` would answer on
its REST port, in TF Serving's real shapes, under {base}/pods/{namespace}/{pod}:

    GET  /v1/models/M[/versions/N|/labels/L]            model status
    GET  /v1/models/M[/versions/N|/labels/L]/metadata   signature defs
    POST /v1/models/M[/versions/N|/labels/L]:predict    row or columnar predict

It reads the `models.config` the operator wrote (the pod's ConfigMap volume,
through the real API), parses it with TF Serving's own message class, and serves
it the way TF Serving does:

- the aspired versions are the numeric directories under base_path (mapped into
  a local model store) that the policy selects (latest N / specific / all);
- each aspired version is LOADING until TensorFlow has loaded the SavedModel
  (and at least `load_seconds` have passed), then AVAILABLE, or END with the
  loader's error; versions that leave the config end in END with OK;
- a config is the whole truth, but a model's label map is applied only when every
  label points at a version AVAILABLE on that pod: TF Serving's reload fails with
  FailedPrecondition otherwise, keeps the old labels and retries on its next poll.
  Such failures are recorded in `reload_errors` (a test can assert there were none);
- unlike TF Serving it sees a new config at once rather than after the next poll.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.config import model_server_config_pb2

_ROUTE = re.compile(
    r"^/pods/(?P<namespace>[^/]+)/(?P<pod>[^/]+)/v1/models/(?P<model>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<tail>/metadata|:predict)?$"
)
OK = {"error_code": "OK", "error_message": ""}


def _error_code(error: BaseException) -> str:
    """DataLossError -> DATA_LOSS, as TF Serving names status codes."""
    name = type(error).__name__.removesuffix("Error")
    if not isinstance(error, tf.errors.OpError):
        return "UNKNOWN"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


class SavedModels:
    """Loads each version directory once, in the background, like TF Serving's loader."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="standin-load")
        self._loads: dict[Path, concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> concurrent.futures.Future[Any]:
        with self._lock:
            if path not in self._loads:
                self._loads[path] = self._pool.submit(tf.saved_model.load, str(path))
            return self._loads[path]


@dataclass
class ModelOnPod:
    # version -> (when its load started (monotonic), the load, still aspired)
    versions: dict[int, tuple[float, concurrent.futures.Future[Any], bool]] = field(
        default_factory=dict
    )
    labels: dict[str, int] = field(default_factory=dict)  # applied
    wanted_labels: dict[str, int] = field(default_factory=dict)  # from the config
    base_path: str = ""


@dataclass
class PodServer:
    """What one pod's TF Serving has been told and has loaded."""

    config_text: str | None = None
    models: dict[str, ModelOnPod] = field(default_factory=dict)


class TFServingStandIn:
    """Serve TF Serving's REST API for every pod, on 127.0.0.1."""

    def __init__(self, api: client.ApiClient, model_store: Path, load_seconds: float = 0.0) -> None:
        self.core = client.CoreV1Api(api)
        self.model_store = model_store
        self.load_seconds = load_seconds
        self.pods: dict[tuple[str, str], PodServer] = {}
        self.saved_models = SavedModels()
        self.requests = 0
        # (namespace, pod, message) of every reload TF Serving would have failed
        self.reload_errors: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/pods/{{namespace}}/{{pod}}"

    def start(self) -> TFServingStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what a pod would serve ----------------------------------------------

    def local_path(self, base_path: str) -> Path:
        """/models/x -> <store>/x; s3://bucket/x -> <store>/s3/bucket/x."""
        if "://" in base_path:
            scheme, rest = base_path.split("://", 1)
            return self.model_store / scheme / rest
        return self.model_store / base_path.removeprefix("/models/")

    def _read_config(self, namespace: str, pod: str) -> str | None:
        try:
            body = self.core.read_namespaced_pod(pod, namespace)
        except ApiException:
            return None
        for volume in body.spec.volumes or []:
            if not volume.config_map:
                continue
            try:
                config_map = self.core.read_namespaced_config_map(volume.config_map.name, namespace)
            except ApiException:
                continue
            text = (config_map.data or {}).get("models.config")
            if text is not None:
                return str(text)
        return None

    def _on_disk(self, base_path: str) -> list[int]:
        root = self.local_path(base_path)
        if not root.is_dir():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())

    def _aspired(self, model: Any) -> list[int]:
        found = self._on_disk(model.base_path)
        policy = model.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        if choice == "specific":
            return [v for v in policy.specific.versions if v in found]
        if choice == "all":
            return found
        count = policy.latest.num_versions if choice == "latest" else 1
        return found[-count:] if count else []

    def refresh(self, namespace: str, pod: str) -> PodServer | None:
        """Apply the pod's current models.config (if it changed) and any label map
        whose versions have become AVAILABLE since."""
        text = self._read_config(namespace, pod)
        if text is None:
            return None
        with self._lock:
            server = self.pods.setdefault((namespace, pod), PodServer())
            if text != server.config_text:
                self._apply(server, text)
            now = time.monotonic()
            for name, model in server.models.items():
                if model.wanted_labels == model.labels:
                    continue
                missing = sorted(
                    v
                    for v in model.wanted_labels.values()
                    if self._state(model, v, now)[0] != "AVAILABLE"
                )
                if not missing:
                    model.labels = dict(model.wanted_labels)
                elif model.labels or any(
                    self._state(model, v, now)[0] == "AVAILABLE" for v in model.versions
                ):
                    # An already-served model: TF Serving's reload fails here.
                    message = (
                        f"FailedPrecondition: Request to assign label to version {missing[0]} "
                        f"of model {name}, which is not currently available for inference"
                    )
                    if (namespace, pod, message) not in self.reload_errors:
                        self.reload_errors.append((namespace, pod, message))
            return server

    def _apply(self, server: PodServer, text: str) -> None:
        config = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(text, config)
        server.config_text = text
        now = time.monotonic()
        listed = {m.name: m for m in config.model_config_list.config}
        for name, model in server.models.items():
            if name not in listed:
                model.versions = {v: (s, f, False) for v, (s, f, _) in model.versions.items()}
                model.wanted_labels = model.labels = {}
        for name, entry in listed.items():
            model = server.models.setdefault(name, ModelOnPod())
            model.base_path = entry.base_path
            aspired = set(self._aspired(entry))
            for version in aspired - set(model.versions):
                path = self.local_path(entry.base_path) / str(version)
                model.versions[version] = (now, self.saved_models.load(path), True)
            for version, (started, load, _) in list(model.versions.items()):
                model.versions[version] = (started, load, version in aspired)
            model.wanted_labels = dict(entry.version_labels)

    def _state(self, model: ModelOnPod, version: int, now: float) -> tuple[str, dict[str, str]]:
        started, load, aspired = model.versions[version]
        if not aspired:
            return "END", OK
        if now - started < self.load_seconds or not load.done():
            return "LOADING", OK
        error = load.exception()
        if error is not None:
            return "END", {"error_code": _error_code(error), "error_message": str(error)}
        return "AVAILABLE", OK

    def model_status(
        self, namespace: str, pod: str, name: str
    ) -> tuple[list[dict[str, Any]], dict[str, int]] | None:
        """(version entries, applied version labels) of a model on a pod; None if unknown."""
        server = self.refresh(namespace, pod)
        if server is None or name not in server.models:
            return None
        model = server.models[name]
        now = time.monotonic()
        entries = []
        for version in sorted(model.versions):
            state, status = self._state(model, version, now)
            entries.append({"version": str(version), "state": state, "status": status})
        return entries, dict(model.labels)

    def servable(
        self, namespace: str, pod: str, name: str, version: str | None, label: str | None
    ) -> tuple[int, Any] | str:
        """(version, loaded SavedModel) a request addresses, or TF Serving's error text."""
        server = self.refresh(namespace, pod)
        model = server.models.get(name) if server else None
        now = time.monotonic()
        available = (
            [v for v in model.versions if self._state(model, v, now)[0] == "AVAILABLE"]
            if model
            else []
        )
        if model and label is not None:
            if label not in model.labels:
                return f"Unrecognized servable version label: {label}"
            wanted = model.labels[label]
        elif version is not None:
            wanted = int(version)
        else:
            wanted = max(available) if available else -1
        if model is None or wanted not in available:
            what = f"Specific({name}, {wanted})" if version or label else f"Latest({name})"
            return f"Servable not found for request: {what}"
        return wanted, model.versions[wanted][1].result()

    def metadata(self, name: str, version: int, model: ModelOnPod) -> dict[str, Any]:
        saved = saved_model_pb2.SavedModel()
        path = self.local_path(model.base_path) / str(version) / "saved_model.pb"
        saved.ParseFromString(path.read_bytes())
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in saved.meta_graphs[0].signature_def.items():
            signatures.signature_def[key].CopyFrom(signature)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    signatures, preserving_proto_field_name=True
                )
            },
        }

    @staticmethod
    def predict(loaded: Any, request: dict[str, Any]) -> dict[str, Any]:
        signature = loaded.signatures[request.get("signature_name") or "serving_default"]
        specs = signature.structured_input_signature[1]
        if "instances" in request:
            rows = request["instances"]
            if len(specs) == 1:
                (key,) = specs
                columns = {key: [r[key] if isinstance(r, dict) else r for r in rows]}
            else:
                columns = {key: [r[key] for r in rows] for key in specs}
        else:
            inputs = request["inputs"]
            (key,) = specs if not isinstance(inputs, dict) else (None,)
            columns = inputs if isinstance(inputs, dict) else {key: inputs}
        tensors = {
            key: tf.constant(np.asarray(value), dtype=specs[key].dtype)
            for key, value in columns.items()
        }
        outputs = {k: v.numpy().tolist() for k, v in signature(**tensors).items()}
        if "instances" not in request:
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        count = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(count)]}

    # -- HTTP ------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin.requests += 1
                match = _ROUTE.match(self.path)
                if not match or match["tail"] == ":predict":
                    self._reply(404, {"error": f"Malformed request: GET {self.path}"})
                    return
                if match["tail"] == "/metadata":
                    self._metadata(match)
                    return
                found = standin.model_status(match["namespace"], match["pod"], match["model"])
                entries, labels = found if found is not None else ([], {})
                wanted = match["version"] or (
                    str(labels[match["label"]]) if match["label"] in labels else None
                )
                if match["version"] or match["label"]:
                    entries = [e for e in entries if e["version"] == wanted]
                if not entries:
                    self._reply(
                        404, {"error": f"Servable not found for request: Latest({match['model']})"}
                    )
                    return
                self._reply(200, {"model_version_status": entries})

            def do_POST(self) -> None:
                standin.requests += 1
                match = _ROUTE.match(self.path)
                if not match or match["tail"] != ":predict":
                    self._reply(404, {"error": f"Malformed request: POST {self.path}"})
                    return
                found = self._servable(match)
                if found is None:
                    return
                length = int(self.headers.get("Content-Length", 0))
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                    self._reply(200, standin.predict(found[1], request))
                except (ValueError, KeyError, TypeError, tf.errors.OpError) as error:
                    self._reply(400, {"error": str(error)})

            def _servable(self, match: re.Match[str]) -> tuple[int, Any] | None:
                """The version and loaded model a request addresses; None after
                answering 404 as TF Serving does."""
                found = standin.servable(
                    match["namespace"],
                    match["pod"],
                    match["model"],
                    match["version"],
                    match["label"],
                )
                if isinstance(found, str):
                    self._reply(404, {"error": found})
                    return None
                return found

            def _metadata(self, match: re.Match[str]) -> None:
                found = self._servable(match)
                if found is None:
                    return
                server = standin.pods[(match["namespace"], match["pod"])]
                self._reply(
                    200, standin.metadata(match["model"], found[0], server.models[match["model"]])
                )

            def _reply(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
