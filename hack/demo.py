"""`make demo`: a real control plane, then a ModelServer becoming a Ready TF Serving fleet.

Uses the cluster in $KUBECONFIG when set; otherwise starts the local control
plane on loopback (built into ~/.cache/tfops on first use) and stops it after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from tfops.devcluster import (
    ClusterError,
    LocalCluster,
    find_control_plane,
)

REPO = Path(__file__).resolve().parents[1]

NAMESPACE = "tfops-demo"


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str | None) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def _run(
        self, args: tuple[str, ...], input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        config = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        return subprocess.run(
            [self.binary, *config, *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
        )

    def succeeds(self, *args: str) -> bool:
        return self._run(args).returncode == 0

    def __call__(
        self, *args: str, show: bool = True, input_text: str | None = None, check: bool = True
    ) -> str:
        if show:
            print(f"$ kubectl {' '.join(args)}", flush=True)
        result = self._run(args, input_text)
        if show:
            print(result.stdout, end="", flush=True)
            if result.returncode != 0:
                print(result.stderr, end="", flush=True)
        if check and result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


@contextlib.contextmanager
def target_cluster() -> Iterator[tuple[Kubectl, bool, dict[str, str], str | None]]:
    """(kubectl, is_local, environment, kubeconfig): the user's cluster from
    $KUBECONFIG, or a local one."""
    if os.environ.get("KUBECONFIG"):
        binary = shutil.which("kubectl")
        if binary is None:
            raise SystemExit("KUBECONFIG is set but kubectl is not on PATH; install kubectl")
        say(f"Using the cluster in KUBECONFIG={os.environ['KUBECONFIG']}")
        yield Kubectl(binary, None), False, dict(os.environ), None
        return
    say(
        "Starting the local control plane on 127.0.0.1 "
        "(etcd, kube-apiserver, controller-manager, scheduler, kwok, metrics-server)"
    )
    with LocalCluster(find_control_plane(), log=lambda m: print(f"    {m}", flush=True)) as local:
        yield (
            Kubectl(str(local.bin / "kubectl"), str(local.kubeconfig)),
            True,
            local.env(),
            str(local.kubeconfig),
        )


def demo_pod() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello", "namespace": NAMESPACE},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {
                        "requests": {"memory": "64Mi", "cpu": "10m"},
                        "limits": {"memory": "256Mi"},
                    },
                }
            ]
        },
    }


def simulated_usage() -> dict[str, object]:
    # kwok serves this as the pod's working set: 40 MiB growing 1 MiB/s.
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ResourceUsage",
        "metadata": {"name": "hello", "namespace": NAMESPACE},
        "spec": {
            "usages": [
                {
                    "usage": {
                        "cpu": {"value": "5m"},
                        "memory": {
                            "expression": 'Quantity("40Mi") + Quantity("1Mi") * pod.SinceSecond()'
                        },
                    }
                }
            ]
        },
    }


def wait(kubectl: Kubectl, what: str, args: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kubectl.succeeds(*args):
            return
        time.sleep(2)
    raise SystemExit(f"timed out waiting for {what}")


def show_modelserver(
    kubectl: Kubectl, target_env: dict[str, str], kubeconfig: str | None, local: bool
) -> None:
    """Install the CRD, run the operator, apply an example and watch it become Ready."""
    say("Installing the ModelServer CRD (generated from the Python spec)")
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    # kubectl wait fails at once while the new CRD has no status yet: retry it.
    wait(
        kubectl,
        "the CRD to be established",
        ["wait", "--for=condition=Established", "crd/modelservers.serving.tfops.dev"],
        timeout=60,
    )

    with contextlib.ExitStack() as stack:
        template = ""
        if local:
            # No container runtime here: a stand-in answers TF Serving's REST
            # model-status API for each pod, from the models.config tfops wrote.
            from kubernetes import config as kube_config

            from tfops.testing.fleet import add_versions, create_models_claim
            from tfops.testing.standin.server import TFServingStandIn

            api = kube_config.new_client_from_config(config_file=kubeconfig)
            store = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="models-")))
            add_versions(store, "/models/ranker", 47, 48)
            add_versions(store, "/models/embedder", 1, 2)
            standin = TFServingStandIn(api, store).start()
            stack.callback(standin.stop)
            template = standin.url_template
            create_models_claim(api, NAMESPACE)
        say("Starting the operator: tfops run")
        log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tfops-"))) / "log"
        with log.open("wb") as handle:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tfops",
                    "run",
                    "--serving-url-template",
                    template,
                    "--metrics-port",
                    "0",
                    "-n",
                    NAMESPACE,
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=target_env,
            )
        stack.callback(operator.wait, 20)
        stack.callback(operator.terminate)

        say(
            "Applying examples/multi-model.yaml: two models, two replicas, memory derived "
            "from the declared sizes"
        )
        kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / "multi-model.yaml"))
        kubectl(
            "wait",
            "--for=condition=Ready",
            "ms/recommender",
            "-n",
            NAMESPACE,
            "--timeout=180s",
            check=False,
        )
        kubectl("get", "ms", "-n", NAMESPACE, "-o", "wide")
        kubectl(
            "get",
            "deploy,svc,pdb,cm,pods",
            "-n",
            NAMESPACE,
            "-l",
            "serving.tfops.dev/modelserver=recommender",
        )
        say("What tfops derived (status.effective) and what TF Serving reports (status.models)")
        kubectl(
            "get",
            "ms",
            "recommender",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.effective}{'\\n'}{.status.models}{'\\n'}",
        )
        say("The models.config TF Serving polls, printed by protobuf from the spec")
        kubectl(
            "get",
            "cm",
            "recommender-config",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.data.models\\.config}",
        )

        say("A bad spec never reaches TF Serving: the apiserver refuses it, naming the fields")
        bad = {
            "apiVersion": "serving.tfops.dev/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": "broken"},
            "spec": {
                "models": [
                    {"name": "a", "basePath": "/models/a", "gpuMemoryFraction": 0.6},
                    {"name": "b", "basePath": "models/b", "gpuMemoryFraction": 0.7},
                ],
                "gpu": {"count": 1},
                "modelStorage": {"claimName": "models"},
            },
        }
        kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=yaml.safe_dump(bad), check=False)
        if local:
            show_memory_guard(kubectl, api, store)
        if operator.poll() is not None:
            print(log.read_text())


LEAK = 'Quantity("100Mi") + Quantity("1Mi") * pod.SinceSecond()'
SAWTOOTH = 'Quantity("300Mi") + Quantity("100Mi") * (double(int(pod.SinceSecond()) % 60) / 60.0)'


def show_memory_guard(kubectl: Kubectl, api: object, store: Path) -> None:
    """Two replicas; kwok makes one leak 60 MiB/min and the other saw up and down.
    The guard judges from five minutes of samples and evicts only the leaking one."""
    from tfops.testing.fleet import add_versions, create_resource_usage, load_example

    say(
        "The memory guard: a fleet of two where one pod leaks 60 MiB/min (about seven "
        "minutes to watch; Ctrl-C stops the demo)"
    )
    manifest = load_example("minimal")
    add_versions(store, manifest["spec"]["models"][0]["basePath"], 1)
    manifest["metadata"]["name"] = "leaky"
    manifest["spec"]["replicas"] = 2
    manifest["spec"]["memoryGuard"] = {"sampleIntervalSeconds": 10, "warmupSeconds": 0}
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=yaml.safe_dump(manifest))
    kubectl("wait", "--for=condition=Ready", "ms/leaky", "-n", NAMESPACE, "--timeout=120s")
    pods = kubectl(
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        "serving.tfops.dev/modelserver=leaky",
        "-o",
        "jsonpath={.items[*].metadata.name}",
        show=False,
    ).split()
    leaking, healthy = sorted(pods)
    create_resource_usage(api, NAMESPACE, leaking, LEAK)  # type: ignore[arg-type]
    create_resource_usage(api, NAMESPACE, healthy, SAWTOOTH)  # type: ignore[arg-type]
    print(f"    {leaking} leaks; {healthy} is healthy (sawtooth between 300 and 400 MiB)")
    deadline = time.monotonic() + 720
    while time.monotonic() < deadline:
        time.sleep(30)
        kubectl(
            "top", "pods", "-n", NAMESPACE, "-l", "serving.tfops.dev/modelserver=leaky", check=False
        )
        restarts = kubectl(
            "get",
            "ms",
            "leaky",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.memoryGuard.restartsTotal}",
            show=False,
            check=False,
        ).strip()
        if restarts and restarts != "0":
            break
    say("What the guard saw and did: the condition, the Events, the restart in status")
    kubectl(
        "get",
        "ms",
        "leaky",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={range .status.conditions[?(@.type=='MemoryLeakSuspected')]}"
        "{.type}={.status}: {.message}{'\\n'}{end}{.status.memoryGuard}{'\\n'}",
    )
    kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        "involvedObject.name=leaky,involvedObject.kind=ModelServer",
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    )
    kubectl("get", "ms", "leaky", "-n", NAMESPACE)


def main() -> int:
    try:
        with target_cluster() as (kubectl, local, target_env, kubeconfig):
            say("Nodes (kwok's fake nodes on the local control plane)" if local else "Nodes")
            kubectl("get", "nodes", "-o", "wide")

            say(f"Creating a pod in namespace {NAMESPACE}")
            kubectl("create", "namespace", NAMESPACE, check=False)
            wait(
                kubectl,
                "the default ServiceAccount",
                ["get", "serviceaccount", "default", "-n", NAMESPACE],
            )
            manifests = [demo_pod(), simulated_usage()] if local else [demo_pod()]
            kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(manifests))
            kubectl("wait", "--for=condition=Ready", "pod/hello", "-n", NAMESPACE, "--timeout=120s")
            kubectl("get", "pod", "hello", "-n", NAMESPACE, "-o", "wide")

            say("Reading the pod's memory through metrics.k8s.io (metrics-server)")
            wait(kubectl, "the first PodMetrics", ["top", "pod", "hello", "-n", NAMESPACE])
            kubectl("top", "pod", "hello", "-n", NAMESPACE)
            if local:
                print("    (waiting for the next scrape: the simulated usage grows 1 MiB/s)")
                time.sleep(12)
                kubectl("top", "pod", "hello", "-n", NAMESPACE)

            show_modelserver(kubectl, target_env, kubeconfig, local)

            kubectl("delete", "namespace", NAMESPACE, "--wait=false", show=False)
            say("Done: a ModelServer became a Ready TF Serving fleet on a real control plane.")
    except ClusterError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
