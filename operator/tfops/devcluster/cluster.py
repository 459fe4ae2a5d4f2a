"""Supervise a local control plane: every listener on 127.0.0.1, ports chosen at run
time, children killed with their parent.

We run the binaries ourselves rather than through kwokctl's binary runtime:
kwokctl binds 0.0.0.0 by default, fetches kubectl and the metrics-server
manifests from the internet when they are missing, and gives fake nodes
192.0.2.x addresses; here nothing may leave loopback.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfops.devcluster.pki import FRONT_PROXY_NAME, Pki, write_pki

# The GPU node pool's label and taint, as NVIDIA's GPU operator and GKE set them.
GPU_NODE_LABEL = "nvidia.com/gpu.present"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
LOOPBACK = "127.0.0.1"
# Stages that replace or add to kwok's own (kwok.yaml).
STAGES = Path(__file__).parent / "stages"
# Room for thousands of Services (a /24 runs out at 253: benchmarks create 300+).
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The local control plane could not be built, started or reached."""


def free_port() -> int:
    """A port free on loopback now. Another process may take it before we bind it;
    `LocalCluster.start` retries the whole start once when that happens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGKILL to the
    # child when the process that started it dies, even by SIGKILL, so an
    # interrupted test run leaves no control plane behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - we start children from one thread
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Ports:
    etcd_client: int = field(default_factory=free_port)
    etcd_peer: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    controller_manager: int = field(default_factory=free_port)
    scheduler: int = field(default_factory=free_port)
    kwok: int = field(default_factory=free_port)
    metrics_server: int = field(default_factory=free_port)


class LocalCluster:
    """A control plane built by `hack/build-control-plane.sh`, started on loopback.

    `home` is the build's cache directory (it holds `bin/` and `kwok/`).
    """

    def __init__(
        self,
        home: Path,
        workdir: Path | None = None,
        *,
        nodes: int = 3,
        gpu_nodes: int = 1,
        pods_per_node: int = 110,
        metric_resolution_seconds: int = 10,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.home = home
        self.bin = home / "bin"
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tfops-cluster-"))
        self.nodes = nodes
        self.gpu_nodes = gpu_nodes
        self.pods_per_node = pods_per_node
        self.metric_resolution_seconds = metric_resolution_seconds
        self._log = log
        self.components: list[Component] = []
        self.ports = Ports()
        self.pki: Pki | None = None

    # -- paths and endpoints -------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.ports.apiserver}"

    @property
    def audit_log(self) -> Path:
        """Every write request (create, update, patch, delete) the apiserver served."""
        return self.workdir / "audit.log"

    def binary(self, name: str) -> str:
        path = self.bin / name
        if not path.is_file():
            raise ClusterError(f"{path} is missing: run hack/build-control-plane.sh (make cluster)")
        return str(path)

    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.components if c.process is not None}

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self._start_once()
                break
            except ClusterError:
                port_taken = any("address already in use" in c.log_tail() for c in self.components)
                self.stop(remove=False)
                # A port we picked may have been taken meanwhile: try once more
                # with fresh ports before giving up.
                if attempt == 2 or not port_taken:
                    raise
                self._log("Retrying the control plane start with fresh ports")
                self.ports = Ports()
        self._log(
            f"Started the control plane in {time.monotonic() - started:.1f}s at {self.server}"
        )

    def _start_once(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Every start is a fresh cluster, also in a reused workdir (kept logs).
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        self.audit_log.unlink(missing_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.pki = write_pki(self.workdir / "pki")
        self._write_kubeconfig()
        self._write_audit_policy()

        self._launch(
            "etcd",
            self._etcd_args(),
            lambda: self._http_ok(f"http://{LOOPBACK}:{self.ports.etcd_client}/health"),
        )
        self._launch("kube-apiserver", self._apiserver_args(), self._apiserver_ready)
        self._launch(
            "kube-controller-manager",
            self._controller_manager_args(),
            lambda: self._https_ok(self.ports.controller_manager, "/healthz"),
        )
        self._launch(
            "kube-scheduler",
            self._scheduler_args(),
            lambda: self._https_ok(self.ports.scheduler, "/healthz"),
        )
        self.kubectl("apply", "--server-side", "-f", str(self.home / "kwok" / "crds"))
        self._launch("kwok", self._kwok_args(), lambda: self._https_ok(self.ports.kwok, "/healthz"))
        self._create_nodes()
        self._launch(
            "metrics-server",
            self._metrics_server_args(),
            lambda: self._https_ok(self.ports.metrics_server, "/livez"),
        )
        self._register_metrics_api()
        self._wait("nodes Ready", self._nodes_ready, timeout=60)
        self._wait("the metrics.k8s.io API", self._metrics_api_available, timeout=90)

    def stop(self, *, remove: bool = True) -> None:
        """Stop every component (newest first) and, by default, delete the workdir."""
        for component in reversed(self.components):
            if component.alive():
                assert component.process is not None
                component.process.terminate()
        deadline = time.monotonic() + 15
        for component in reversed(self.components):
            if component.process is None:
                continue
            try:
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                component.process.kill()
                component.process.wait()
        self.components = []
        if remove and self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers for callers -------------------------------------------------

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def env(self) -> dict[str, str]:
        """Environment for child processes that should talk to this cluster."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    # -- component arguments -------------------------------------------------

    def _etcd_args(self) -> list[str]:
        client = f"http://{LOOPBACK}:{self.ports.etcd_client}"
        peer = f"http://{LOOPBACK}:{self.ports.etcd_peer}"
        return [
            self.binary("etcd"),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            # Test data: durability buys nothing and fsync dominates latency.
            "--unsafe-no-fsync",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self._pki()
        return [
            self.binary("kube-apiserver"),
            f"--etcd-servers=http://{LOOPBACK}:{self.ports.etcd_client}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            # The aggregation layer: the apiserver proxies metrics.k8s.io to
            # metrics-server and authenticates itself with this client cert.
            f"--proxy-client-cert-file={pki.front_proxy_cert}",
            f"--proxy-client-key-file={pki.front_proxy_key}",
            f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            # Only the proxy's own identity may assert users through headers.
            f"--requestheader-allowed-names={FRONT_PROXY_NAME}",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
        ]

    def _controller_manager_args(self) -> list[str]:
        pki = self._pki()
        return [
            self.binary("kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports.controller_manager}",
            f"--cert-dir={self.workdir / 'pki' / 'controller-manager'}",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The defaults (20 qps) would make the controller-manager, not the
            # code under test, the bottleneck of every benchmark with many objects.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
        ]

    def _scheduler_args(self) -> list[str]:
        return [
            self.binary("kube-scheduler"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports.scheduler}",
            f"--cert-dir={self.workdir / 'pki' / 'scheduler'}",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]

    def _kwok_args(self) -> list[str]:
        pki = self._pki()
        config = self.workdir / "kwok.yaml"
        # kwok's own stages, with ours in place of those of the same file name
        # (readiness gates as the kubelet treats them: see stages/).
        stages = {
            name: (self.home / "kwok" / name).read_text()
            for name in os.listdir(self.home / "kwok")
            if name.endswith(".yaml")
        } | {path.name: path.read_text() for path in STAGES.glob("*.yaml")}
        documents = [stages[name] for name in sorted(stages)]
        config.write_text("\n---\n".join(documents))
        return [
            self.binary("kwok"),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--node-ip={LOOPBACK}",
            f"--node-port={self.ports.kwok}",
            f"--server-address={LOOPBACK}:{self.ports.kwok}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
            "--enable-crds=ResourceUsage,ClusterResourceUsage",
        ]

    def _metrics_server_args(self) -> list[str]:
        pki = self._pki()
        return [
            self.binary("metrics-server"),
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports.metrics_server}",
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            # kwok serves each fake node's resource metrics at the node's
            # InternalIP (127.0.0.1) and status port, with a self-signed cert.
            "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port",
            "--kubelet-insecure-tls",
            f"--metric-resolution={self.metric_resolution_seconds}s",
            # Must stay below the resolution; kwok answers on loopback at once.
            f"--kubelet-request-timeout={max(1, self.metric_resolution_seconds // 2)}s",
        ]

    # -- setup steps ---------------------------------------------------------

    def _pki(self) -> Pki:
        if self.pki is None:
            raise ClusterError("the PKI has not been written yet")
        return self.pki

    def _write_kubeconfig(self) -> None:
        pki = self._pki()

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tfops-dev",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "tfops-dev-admin",
                    "user": {
                        "client-certificate-data": b64(pki.admin_cert),
                        "client-key-data": b64(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "tfops-dev",
                    "context": {"cluster": "tfops-dev", "user": "tfops-dev-admin"},
                }
            ],
            "current-context": "tfops-dev",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _write_audit_policy(self) -> None:
        # Writes only, at Metadata level: enough to count what a client changed.
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                {
                    "level": "Metadata",
                    "verbs": ["create", "update", "patch", "delete", "deletecollection"],
                },
                {"level": "None"},
            ],
        }
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(policy))

    @property
    def node_names(self) -> list[str]:
        return [f"kwok-node-{i}" for i in range(self.nodes)] + [
            f"kwok-gpu-node-{i}" for i in range(self.gpu_nodes)
        ]

    def _create_nodes(self) -> None:
        """Plain nodes, and a GPU node pool as clouds set one up: fake GPUs, a label
        to select them by and a taint that keeps everything else off."""
        nodes = []
        for index, name in enumerate(self.node_names):
            gpu = name.startswith("kwok-gpu-node-")
            capacity = {
                "cpu": "32",
                "memory": "256Gi",
                "ephemeral-storage": "500Gi",
                "pods": str(self.pods_per_node),
            }
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            }
            spec: dict[str, Any] = {
                "podCIDR": f"10.244.{index}.0/24",
                "podCIDRs": [f"10.244.{index}.0/24"],
            }
            if gpu:
                capacity["nvidia.com/gpu"] = "8"
                labels[GPU_NODE_LABEL] = "true"
                spec["taints"] = [GPU_TAINT]
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            "kwok.x-k8s.io/node": "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                            "metrics.k8s.io/resource-metrics-path": (
                                f"/metrics/nodes/{name}/metrics/resource"
                            ),
                        },
                        "labels": labels,
                    },
                    "spec": spec,
                    "status": {
                        "addresses": [
                            {"type": "InternalIP", "address": LOOPBACK},
                            {"type": "Hostname", "address": name},
                        ],
                        "allocatable": capacity,
                        "capacity": capacity,
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": self.ports.kwok}},
                    },
                }
            )
        self.kubectl("create", "-f", "-", input_text=yaml.safe_dump_all(nodes))

    def _register_metrics_api(self) -> None:
        # No kube-proxy here, so a ClusterIP Service cannot reach metrics-server.
        # An ExternalName Service makes the aggregator dial 127.0.0.1 directly.
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "metrics-server", "namespace": "kube-system"},
                "spec": {
                    "type": "ExternalName",
                    "externalName": LOOPBACK,
                    "ports": [{"name": "https", "port": self.ports.metrics_server}],
                },
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "insecureSkipTLSVerify": True,
                    "service": {
                        "name": "metrics-server",
                        "namespace": "kube-system",
                        "port": self.ports.metrics_server,
                    },
                },
            },
        ]
        self.kubectl("apply", "--server-side", "-f", "-", input_text=yaml.safe_dump_all(manifests))

    # -- readiness -----------------------------------------------------------

    def _launch(self, name: str, argv: list[str], ready: Callable[[], bool]) -> None:
        component = Component(name, argv, self.workdir / "logs" / f"{name}.log")
        self.components.append(component)
        component.start()
        self._wait(name, ready, timeout=60, component=component)
        self._log(f"Started {name}")

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        *,
        timeout: float,
        component: Component | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if component is not None and not component.alive():
                raise ClusterError(f"{what} exited during start-up:\n{component.log_tail()}")
            with contextlib.suppress(OSError, ClusterError, ValueError):
                if ready():
                    return
            time.sleep(0.25)
        detail = f":\n{component.log_tail()}" if component is not None else ""
        raise ClusterError(f"{what} was not ready after {timeout:.0f}s{detail}")

    def _client_context(self) -> ssl.SSLContext:
        pki = self._pki()
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return context

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False

    def _https_ok(self, port: int, path: str) -> bool:
        # Controller-manager, scheduler and kwok serve self-signed certificates.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return self._http_ok(f"https://{LOOPBACK}:{port}{path}", context)

    def _apiserver_ready(self) -> bool:
        return self._http_ok(f"{self.server}/readyz", self._client_context())

    def get(self, path: str) -> Any:
        """GET a path of the apiserver as admin and decode the JSON answer."""
        with urllib.request.urlopen(
            f"{self.server}{path}", timeout=5, context=self._client_context()
        ) as response:
            return json.load(response)

    def install_crd(self, path: Path, name: str) -> None:
        """Apply a CRD and wait until it is established."""
        self.kubectl("apply", "--server-side", "-f", str(path))
        self.wait_for_crd(name)

    def wait_for_crd(self, name: str, timeout: float = 60.0) -> None:
        """Until the CRD is established. (`kubectl wait` fails at once while a new CRD
        has no status yet, so this polls instead.)"""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (found.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"CRD {name} not established after {timeout:.0f}s")
            time.sleep(0.2)

    def _nodes_ready(self) -> bool:
        nodes = self.get("/api/v1/nodes")["items"]
        ready = [
            node
            for node in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) == len(self.node_names)

    def _metrics_api_available(self) -> bool:
        service = self.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
        return any(
            c["type"] == "Available" and c["status"] == "True"
            for c in service.get("status", {}).get("conditions", [])
        )
