"""A STAND-IN for TensorFlow Serving's REST API on every serving pod, for tests,
benchmarks and the demo. One process answers for all pods on 127.0.0.1, under
{base}/pods/{namespace}/{pod}, what each pod's tensorflow_model_server would:

    GET  /v1/models/M[/versions/N|/labels/L]            model status
    GET  /v1/models/M[/versions/N|/labels/L]/metadata   signature defs (TensorFlow)
    POST /v1/models/M[/versions/N|/labels/L]:predict    row or columnar predict (TensorFlow)

It watches the cluster's serving pods and ConfigMaps (as the kubelet would mount
them) and runs one `tfops.testing.standin.tfserving.Process` per pod: started when the
pod's container runs, with the flags the operator rendered, re-started when the
container restarts, gone when the pod is deleted (TF Serving has no SIGTERM
handling: it simply stops answering, §8.8).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tfops.clients.kube_watch import stream_lines
from tfops.testing.standin.tfserving import (
    BadFlag,
    DirectoryLoader,
    Loader,
    ModelStore,
    Options,
    Process,
    Refused,
    Timing,
)

CONTAINER = "tensorflow-serving"
MODELS_FILE = "models.config"
SELECTOR = "app.kubernetes.io/managed-by=tfops"
TICK_SECONDS = 0.05
# http_rest_api_handler.cc's routes (GET status/metadata, POST predict & co).
_POD = re.compile(r"^/pods/(?P<namespace>[^/]+)/(?P<pod>[^/]+)(?P<rest>/.*)$")
_GET = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<metadata>/metadata)?$"
)
_POST = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>predict|classify|regress)$"
)


class PodView:
    """What the stand-in knows of one serving pod from the API."""

    def __init__(self, pod: dict[str, Any]) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        self.uid = meta.get("uid", "")
        self.deleting = bool(meta.get("deletionTimestamp"))
        container = next((c for c in spec.get("containers") or [] if c["name"] == CONTAINER), {})
        self.args: list[str] = list(container.get("args") or [])
        self.config_map = next(
            (
                v["configMap"]["name"]
                for v in spec.get("volumes") or []
                if v.get("configMap") and v.get("name") == "config"
            ),
            None,
        )
        running = next(
            (
                c
                for c in status.get("containerStatuses") or []
                if c.get("name") == CONTAINER and (c.get("state") or {}).get("running")
            ),
            None,
        )
        self.running = running is not None and not self.deleting
        # A new container (restart) is a new process.
        self.incarnation = (self.uid, running.get("restartCount", 0) if running else -1)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # Each pod's TF Serving accepts on its own listener, with libevent's default
    # backlog of 128 (util/net_http/server/internal/evhttp_server.cc binds with
    # evhttp_bind_socket_with_handle; libevent's evconnlistener_new, given no
    # backlog, calls listen(fd, 128)). This one listener stands in for every pod's, so
    # socketserver's default of 5 dropped connections no fleet of real pods would
    # (83,000 in one 1000-fleet benchmark run, each ask then waiting out a 1 s SYN
    # retransmit). The kernel caps it at net.core.somaxconn.
    request_queue_size = 4096

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its time-out) closed the connection: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class TFServingStandIn:
    """Serve TF Serving's REST API for every serving pod, on 127.0.0.1.

    `loader`: how versions load (default: TensorFlow loads the SavedModel, so
    metadata and predict work; `DirectoryLoader()` needs no TensorFlow). The
    timing knobs shorten TF Serving's waits (loads, polls, retry interval);
    `silent` pods never answer and `slow` pods answer after a delay (benchmarks)."""

    def __init__(
        self,
        api: client.ApiClient,
        model_store: Path,
        *,
        loader: Loader | None = None,
        load_seconds: float = 0.0,
        config_poll_seconds: float | None = 1.0,
        version_poll_seconds: float | None = 1.0,
        retry_interval_seconds: float | None = 0.5,
        silent: Callable[[str, str], bool] = lambda _namespace, _pod: False,
        delay: Callable[[str, str], float] = lambda _namespace, _pod: 0.0,
    ) -> None:
        self.api = api
        self.store = ModelStore(model_store)
        if loader is None:
            from tfops.testing.standin.tensorflow_backend import TensorFlowLoader

            loader = TensorFlowLoader()
        self.loader = loader
        self.timing = Timing(
            load_seconds=load_seconds,
            config_poll_seconds=config_poll_seconds,
            version_poll_seconds=version_poll_seconds,
            retry_interval_seconds=retry_interval_seconds,
        )
        self.silent = silent
        self.delay = delay
        # Per namespace, how long loads take there (set_load_seconds).
        self.load_seconds: dict[str, float] = {}
        self.pods: dict[tuple[str, str], PodView] = {}
        self.configs: dict[tuple[str, str], str] = {}
        # Set when a pod or ConfigMap changed: processes follow pods only then, so a
        # tick with thousands of pods costs nothing when nothing changed.
        self.changed = True
        self.processes: dict[tuple[str, str], tuple[tuple[str, int], Process]] = {}
        # Everything a real TF Serving would have logged as a failed reload or an
        # exit, kept after the process is gone: (namespace, pod, message).
        self.reload_errors: list[tuple[str, str, str]] = []
        self.exits: list[tuple[str, str, str]] = []
        self.requests = 0
        self.lock = threading.RLock()
        self.stopped = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._watch, args=("pods",), daemon=True),
            threading.Thread(target=self._watch, args=("configmaps",), daemon=True),
            threading.Thread(target=self._tick, daemon=True),
        ]

    @property
    def url_template(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/pods/{{namespace}}/{{pod}}"

    def start(self) -> TFServingStandIn:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def local_path(self, base_path: str) -> Path:
        return self.store.local_path(base_path)

    def wedge_config_poll(self, namespace: str, pod: str) -> None:
        """Make one pod's TF Serving stop applying models.config (field reports:
        its polling wedged on a bad path and ignored later fixes)."""
        process = self.process(namespace, pod)
        if process is None:
            raise KeyError(f"no running TF Serving for pod {namespace}/{pod}")
        with self.lock:
            process.config_poll_wedged = True

    def set_load_seconds(self, namespace: str, seconds: float) -> None:
        """Make every load in one namespace take this long from now on (a model of
        several GiB restoring for minutes), in running pods and new ones."""
        with self.lock:
            self.load_seconds[namespace] = seconds
            for (pod_namespace, _), (_, process) in self.processes.items():
                if pod_namespace == namespace:
                    process.timing = replace(process.timing, load_seconds=seconds)

    def process(self, namespace: str, pod: str) -> Process | None:
        with self.lock:
            found = self.processes.get((namespace, pod))
            return found[1] if found else None

    # -- the cluster, as the kubelet sees it ---------------------------------------

    def _watch(self, kind: str) -> None:
        core = client.CoreV1Api(self.api)
        lister = (
            core.list_pod_for_all_namespaces
            if kind == "pods"
            else core.list_config_map_for_all_namespaces
        )
        while not self.stopped.is_set():
            try:
                listed = lister(label_selector=SELECTOR, _preload_content=False)
                body = json.loads(listed.data)
                with self.lock:
                    self._replace(kind, body["items"])
                # Read line by line as JSON: the client's Watch would also build
                # a V1Pod from each event, most of the stand-in's CPU at a
                # thousand fleets (CPU the control plane shares on one machine).
                response = lister(
                    label_selector=SELECTOR,
                    resource_version=body["metadata"]["resourceVersion"],
                    watch=True,
                    timeout_seconds=60,
                    _preload_content=False,
                )
                try:
                    for line in stream_lines(response.stream(64 * 1024)):
                        if self.stopped.is_set():
                            return
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            break  # the version expired: list again
                        if event["type"] == "BOOKMARK":
                            continue
                        with self.lock:
                            self._observe(kind, event["type"], event["object"])
                finally:
                    # Closed, not pooled: left mid-event, the connection is unusable.
                    response.close()
                    response.release_conn()
            except (ApiException, OSError, ValueError, urllib3.exceptions.HTTPError):
                # A watch ends (time-out, apiserver restart): list again.
                self.stopped.wait(0.5)

    def _replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        self.changed = True
        if kind == "pods":
            self.pods = {}
        else:
            self.configs = {}
        for item in items:
            self._observe(kind, "ADDED", item)

    def _observe(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        self.changed = True
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "configmaps":
            text = (obj.get("data") or {}).get(MODELS_FILE)
            if event == "DELETED" or text is None:
                self.configs.pop(key, None)
            else:
                self.configs[key] = text
        elif event == "DELETED":
            self.pods.pop(key, None)
        else:
            self.pods[key] = PodView(obj)

    def _tick(self) -> None:
        while not self.stopped.wait(TICK_SECONDS):
            now = time.monotonic()
            with self.lock:
                if self.changed:
                    self.changed = False
                    self._converge(now)
                for key, (_, process) in self.processes.items():
                    if now >= process.idle_until:
                        self._advance(key, process, now)

    def _converge(self, now: float) -> None:
        """Start, restart and drop processes as the pods' containers do."""
        for key in list(self.processes):
            view = self.pods.get(key)
            if view is None or not view.running or view.incarnation != self.processes[key][0]:
                del self.processes[key]
        for key, view in self.pods.items():
            if key in self.processes or not view.running or view.config_map is None:
                continue
            config_key = (key[0], view.config_map)
            if config_key not in self.configs:
                continue  # the kubelet waits for the ConfigMap before it starts the container
            try:
                options = Options.from_args(view.args)
            except BadFlag as error:
                self.exits.append((*key, str(error)))
                continue
            process = Process(
                options,
                lambda config_key=config_key: self.configs.get(config_key),
                self.store,
                self.loader,
                now,
                replace(self.timing, load_seconds=self.load_seconds[key[0]])
                if key[0] in self.load_seconds
                else self.timing,
            )
            self.processes[key] = (view.incarnation, process)
            self._advance(key, process, now)

    def _advance(self, key: tuple[str, str], process: Process, now: float) -> None:
        errors, exited = len(process.reload_errors), process.exit_message
        process.advance(now)
        for message in process.reload_errors[errors:]:
            self.reload_errors.append((*key, message))
        if process.exit_message is not None and exited is None:
            self.exits.append((*key, process.exit_message))

    # -- HTTP ------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _process(self) -> tuple[re.Match[str], Process] | None:
                """The addressed pod's process, or None after dropping the connection
                as a closed port would (ports open only after the initial load)."""
                standin.requests += 1
                routed = _POD.match(self.path)
                if routed is None:
                    self._reply(404, {"error": f"no such pod route: {self.path}"})
                    return None
                namespace, pod = routed["namespace"], routed["pod"]
                if standin.silent(namespace, pod):
                    self.close_connection = True
                    return None
                delay = standin.delay(namespace, pod)
                if delay:
                    time.sleep(delay)
                process = standin.process(namespace, pod)
                if process is None or not process.ports_open:
                    self.close_connection = True
                    return None
                return routed, process

            def do_GET(self) -> None:
                found = self._process()
                if found is None:
                    return
                routed, process = found
                match = _GET.match(routed["rest"])
                if match is None:
                    self._reply(400, {"error": f"Malformed request: GET {routed['rest']}"})
                    return
                with standin.lock:
                    if match["metadata"]:
                        self._metadata(process, match)
                    else:
                        self._status(process, match)

            def _status(self, process: Process, match: re.Match[str]) -> None:
                name = match["model"]
                entries = process.version_status(name)
                if entries is None:
                    self._reply(404, {"error": f"Could not find any versions of model {name}"})
                    return
                if match["version"]:
                    # GET .../labels/L ignores the label and lists every version (§5).
                    entries = [e for e in entries if e["version"] == match["version"]]
                    if not entries:
                        self._reply(
                            404,
                            {"error": f"Could not find version {match['version']} of model {name}"},
                        )
                        return
                self._reply(200, {"model_version_status": entries})

            def _metadata(self, process: Process, match: re.Match[str]) -> None:
                try:
                    number, _ = self._servable(process, match)
                    from tfops.testing.standin.tensorflow_backend import metadata

                    model = process.models[match["model"]]
                    path = standin.store.local_path(model.base_path) / str(number)
                    self._reply(200, metadata(match["model"], number, path))
                except Refused as refused:
                    self._reply(refused.code, {"error": str(refused)})

            def do_POST(self) -> None:
                found = self._process()
                if found is None:
                    return
                routed, process = found
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                match = _POST.match(routed["rest"])
                if match is None or match["verb"] != "predict":
                    self._reply(400, {"error": f"Malformed request: POST {routed['rest']}"})
                    return
                try:
                    with standin.lock:
                        _, servable = self._servable(process, match)
                    from tfops.testing.standin.tensorflow_backend import predict

                    self._reply(200, predict(servable, json.loads(raw or b"{}")))
                except Refused as refused:
                    self._reply(refused.code, {"error": str(refused)})
                except (ValueError, KeyError, TypeError) as error:
                    self._reply(400, {"error": str(error)})

            @staticmethod
            def _servable(process: Process, match: re.Match[str]) -> tuple[int, Any]:
                version = int(match["version"]) if match["version"] else None
                return process.servable(match["model"], version, match["label"])

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


__all__ = ["DirectoryLoader", "TFServingStandIn"]
