"""Promoting model versions end to end: real SavedModels in a model store, the
TF Serving stand-in loading them with TensorFlow, the operator staging each
change through models.config, and `tfops promote` run as a pipeline runs it.

These tests run on a control plane and operator of their own (the operator is
killed in one of them), with a stand-in whose loads take a few seconds so the
steps can be seen."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from tfops.crd import CRD_NAME
from tfops.devcluster import LocalCluster, find_control_plane
from tfops.promotion import Configured
from tfops.render.configmap import parse_models_config
from tfops.testing.fleet import (
    CRD_FILE,
    ModelServers,
    OperatorProcess,
    add_versions,
    create_models_claim,
    create_namespace,
    events_for,
)
from tfops.testing.standin.server import TFServingStandIn
from tfops.testing.support import wait_for

LOAD_SECONDS = 3.0
NAME = "search"


@dataclass
class Stage:
    cluster: LocalCluster
    api: client.ApiClient
    store: Path
    standin: TFServingStandIn
    operator: OperatorProcess | None = None
    stack: list[Any] = field(default_factory=list)

    def start_operator(self) -> OperatorProcess:
        manager = OperatorProcess.start(self.cluster, self.standin.url_template)
        self.operator = manager.__enter__()
        self.stack.append(manager)
        return self.operator

    def namespace(self) -> str:
        name = create_namespace(self.api, f"promote-{uuid.uuid4().hex[:6]}")
        create_models_claim(self.api, name)
        return name

    def tfops(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The CLI as a pipeline runs it: a subprocess, no terminal."""
        return subprocess.run(
            [sys.executable, "-m", "tfops", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.cluster.env()},
            check=False,
        )


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    workdir = os.environ.get("TFOPS_TEST_WORKDIR")
    with LocalCluster(
        find_control_plane(), Path(workdir) / "promotion" if workdir else None, log=print
    ) as local:
        local.install_crd(CRD_FILE, CRD_NAME)
        api = config.new_client_from_config(str(local.kubeconfig))
        store = tmp_path_factory.mktemp("promotion-models")
        standin = TFServingStandIn(api, store, load_seconds=LOAD_SECONDS).start()
        result = Stage(local, api, store, standin)
        result.start_operator()
        try:
            yield result
        finally:
            for manager in reversed(result.stack):
                manager.__exit__(None, None, None)
            standin.stop()


def _ranker(base: str, versions: list[int], *, stable: int) -> dict[str, Any]:
    return {
        "name": "ranker",
        "basePath": base,
        "size": "100Mi",
        "versionPolicy": {"specific": versions},
        "versionLabels": {"stable": stable},
    }


def _fleet(stage: Stage, namespace: str, base: str, **spec: Any) -> ModelServers:
    manifest = {
        "apiVersion": "serving.tfops.dev/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": 2,
            "modelStorage": {"claimName": "models"},
            "models": [_ranker(base, [47], stable=47)],
            "promotion": {"graceSeconds": 5},
            **spec,
        },
    }
    servers = ModelServers(stage.api, namespace)
    servers.create(manifest)
    servers.wait_condition(NAME, "Ready", "True", "AllModelsAvailable", timeout=120)
    return servers


class ConfigHistory:
    """Every models.config the operator wrote for the fleet, in order (a watch)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.seen: list[Configured] = []
        self._stop = threading.Event()
        core = client.CoreV1Api(api)

        def follow() -> None:
            while not self._stop.is_set():
                for event in watch.Watch().stream(
                    core.list_namespaced_config_map,
                    namespace,
                    field_selector=f"metadata.name={NAME}-config",
                    timeout_seconds=5,
                ):
                    text = (event["object"].data or {}).get("models.config", "")
                    served = parse_models_config(text).get("ranker")
                    if served is not None and (not self.seen or self.seen[-1] != served):
                        self.seen.append(served)

        threading.Thread(target=follow, daemon=True).start()

    def stop(self) -> list[Configured]:
        self._stop.set()
        return self.seen


def _pods(api: client.ApiClient, namespace: str) -> set[str]:
    return {p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(namespace).items}


def _model_versions(api: client.ApiClient, namespace: str) -> dict[int, str]:
    deployments = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    assert len(deployments) == 1
    status = ModelServers(api, namespace).get(NAME)["status"]
    (model,) = status["models"]
    return {v["version"]: v["state"] for v in model["versions"]}


def test_promote_moves_the_label_only_after_the_version_serves_everywhere(stage: Stage) -> None:
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47, 48)
    servers = _fleet(stage, namespace, base)
    pods = _pods(stage.api, namespace)
    generation = client.AppsV1Api(stage.api).read_namespaced_deployment(NAME, namespace)
    history = ConfigHistory(stage.api, namespace)
    time.sleep(1)

    result = stage.tfops(
        "promote", NAME, "--model", "ranker", "--version", "48", "--label", "stable",
        "-n", namespace, "--timeout", "2m",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # Not a terminal: plain progress lines, the last one saying it is done.
    lines = result.stdout.strip().splitlines()
    assert "\r" not in result.stdout and "\033" not in result.stdout
    assert any("Loading" in line for line in lines), lines
    assert lines[-1].startswith("Done: model ranker serves versions 48 (labels stable=48)")

    wait_for(lambda: len(history.seen) >= 4, timeout=30, what="the last config write")
    assert history.stop() == [
        Configured((47,), (("stable", 47),)),  # before
        Configured((47, 48), (("stable", 47),)),  # 48 loads beside 47
        Configured((47, 48), (("stable", 48),)),  # the label moves once 48 is everywhere
        Configured((48,), (("stable", 48),)),  # 47 unloaded after the grace
    ]
    # TF Serving never saw a label ahead of its version (it would have refused it).
    assert [e for e in stage.standin.reload_errors if e[0] == namespace] == []
    # Hot reloads only: the same pods, no rollout.
    assert _pods(stage.api, namespace) == pods
    after = client.AppsV1Api(stage.api).read_namespaced_deployment(NAME, namespace)
    assert after.metadata.generation == generation.metadata.generation
    assert servers.get(NAME)["status"]["models"][0]["labels"] == {"stable": 48}
    wait_for(
        lambda: (
            {"Promoting", "LabelsMoved", "PromotionComplete"}
            <= {e.reason for e in events_for(stage.api, namespace, NAME)}
        ),
        timeout=10,
        what="the promotion's Events",
    )


def test_a_corrupt_version_is_rolled_back_and_promote_fails_with_the_error(
    stage: Stage,
) -> None:
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47)
    add_versions(stage.store, base, 49, corrupt=True)
    servers = _fleet(stage, namespace, base)
    pods = _pods(stage.api, namespace)

    result = stage.tfops(
        "promote", NAME, "--model", "ranker", "--version", "49", "--label", "stable",
        "-n", namespace, "--timeout", "2m",
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "FAILED: Model ranker version 49 failed to load" in result.stdout
    assert "Error parsing message" in result.stdout  # TensorFlow's own words
    assert "rolled back to versions 47 (labels stable=47)" in result.stdout

    degraded = servers.wait_condition(NAME, "Degraded", "True", "PromotionFailed")
    assert "version 49 failed to load" in degraded["message"]
    live = client.CoreV1Api(stage.api).read_namespaced_config_map(f"{NAME}-config", namespace)
    assert parse_models_config(live.data["models.config"])["ranker"] == Configured(
        (47,), (("stable", 47),)
    )
    # 47 kept serving: AVAILABLE on every pod, without a pod restart.
    assert _model_versions(stage.api, namespace)[47] == "AVAILABLE"
    assert _pods(stage.api, namespace) == pods
    wait_for(
        lambda: "PromotionRolledBack" in {e.reason for e in events_for(stage.api, namespace, NAME)},
        timeout=10,
        what="the PromotionRolledBack Event",
    )
    assert stage.operator is not None
    assert (
        stage.operator.metric(
            "tfops_promotion_failures_total", namespace=namespace, modelserver=NAME, model="ranker"
        )
        == 1
    )


def test_validate_refuses_a_breaking_signature_and_changes_nothing(stage: Stage) -> None:
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47)
    add_versions(stage.store, base, 50, signature="breaking")
    add_versions(stage.store, base, 51, signature="extra-output")
    servers = _fleet(stage, namespace, base)
    before = servers.get(NAME)["metadata"]["generation"]
    local = stage.standin.local_path(base)

    breaking = stage.tfops(
        "promote", NAME, "--model", "ranker", "--version", "50", "--label", "stable",
        "-n", namespace, "--validate", str(local / "50"),
    )  # fmt: skip
    assert breaking.returncode == 4, breaking.stdout + breaking.stderr
    assert "BREAKING serving_default: input 'x' removed (was float[?, 3])" in breaking.stdout
    assert "BREAKING serving_default: input 'features' added" in breaking.stdout
    assert "--allow-breaking" in breaking.stderr
    assert servers.get(NAME)["metadata"]["generation"] == before

    # A compatible change (a new output) passes the gate, compared through TF
    # Serving's REST metadata of the serving version.
    pod = sorted(_pods(stage.api, namespace))[0]
    url = stage.standin.url_template.format(namespace=namespace, pod=pod)
    compatible = stage.tfops(
        "promote", NAME, "--model", "ranker", "--version", "51", "--label", "stable",
        "-n", namespace, "--validate", str(local / "51"), "--against-url", url,
    )  # fmt: skip
    assert compatible.returncode == 0, compatible.stdout + compatible.stderr
    assert "serving_default: output 'confidence' added" in compatible.stdout


def test_dry_run_prints_the_steps_and_changes_nothing(stage: Stage) -> None:
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47, 48)
    servers = _fleet(stage, namespace, base)
    before = servers.get(NAME)["metadata"]["generation"]
    result = stage.tfops(
        "promote", NAME, "--model", "ranker", "--version", "48", "--label", "stable",
        "-n", namespace, "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1. load version 48 of ranker beside versions 47 (labels stable=47)" in result.stdout
    assert "move label stable to 48" in result.stdout
    assert '"op": "test"' in result.stdout
    assert servers.get(NAME)["metadata"]["generation"] == before
    missing = stage.tfops("promote", NAME, "--model", "nope", "--version", "1", "-n", namespace)
    assert missing.returncode == 2 and "has no model 'nope' (ranker)" in missing.stderr


def test_a_transition_the_limit_cannot_hold_is_refused_with_the_numbers(stage: Stage) -> None:
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47, 48, 49, 50)
    servers = _fleet(stage, namespace, base, resources={"limits": {"memory": "900Mi"}})
    servers.patch(NAME, {"models": [_ranker(base, [47, 48], stable=47)]})
    servers.wait_condition(NAME, "Ready", "True", "AllModelsAvailable", timeout=60)
    # Four versions of 100Mi side by side would need 1056Mi at 2x: more than 900Mi.
    servers.patch(NAME, {"models": [_ranker(base, [49, 50], stable=49)]})
    degraded = servers.wait_condition(NAME, "Degraded", "True", "PromotionFailed")
    assert "4 versions of 100 MiB side by side" in degraded["message"]
    assert "1056Mi" in degraded["message"] and "900Mi" in degraded["message"]
    assert "raise spec.resources.limits.memory" in degraded["message"]
    live = client.CoreV1Api(stage.api).read_namespaced_config_map(f"{NAME}-config", namespace)
    assert parse_models_config(live.data["models.config"])["ranker"].versions == (47, 48)


def test_a_promotion_interrupted_by_an_operator_restart_completes(stage: Stage) -> None:
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47, 48)
    servers = _fleet(stage, namespace, base)
    history = ConfigHistory(stage.api, namespace)
    time.sleep(1)
    body = servers.get(NAME)
    model = body["spec"]["models"][0] | {
        "versionPolicy": {"specific": [48]},
        "versionLabels": {"stable": 48},
    }
    servers.patch(NAME, {"models": [model]})

    def loading() -> bool:
        records = servers.get(NAME).get("status", {}).get("promotions") or []
        return any(r["step"] == "Loading" for r in records)

    wait_for(loading, timeout=30, what="the promotion to be loading")
    assert stage.operator is not None
    stage.operator.kill()  # mid-way: 48 is loading (the stand-in takes 3 s)
    stage.start_operator()
    servers.wait_condition(NAME, "Ready", "True", "AllModelsAvailable", timeout=90)
    record = servers.get(NAME)["status"]["promotions"][0]
    assert record["step"] == "Done"
    wait_for(lambda: history.seen[-1].versions == (48,), timeout=30, what="47 unloaded")
    seen = history.stop()
    assert seen[0] == Configured((47,), (("stable", 47),))
    assert seen[-1] == Configured((48,), (("stable", 48),))
    # Never a label ahead of its version, never 47 dropped before 48 served.
    assert Configured((48,), (("stable", 47),)) not in seen
    assert [e for e in stage.standin.reload_errors if e[0] == namespace] == []


def test_kubectl_patch_then_wait_returns_only_when_the_promotion_is_done(stage: Stage) -> None:
    """The declarative path a pipeline without tfops takes."""
    namespace = stage.namespace()
    base = f"/models/{namespace}/ranker"
    add_versions(stage.store, base, 47, 48)
    _fleet(stage, namespace, base)
    patch = (
        '{"spec": {"models": [{"name": "ranker", "basePath": "' + base + '", "size": "100Mi", '
        '"versionPolicy": {"specific": [48]}, "versionLabels": {"stable": 48}}]}}'
    )
    stage.cluster.kubectl("patch", "ms", NAME, "-n", namespace, "--type=merge", "-p", patch)
    waited = stage.cluster.kubectl(
        "wait", "--for=condition=Ready", f"ms/{NAME}", "-n", namespace, "--timeout=90s"
    )
    assert "condition met" in waited.stdout
    live = client.CoreV1Api(stage.api).read_namespaced_config_map(f"{NAME}-config", namespace)
    # Ready again means the whole promotion is through: label moved, 47 unloaded.
    assert parse_models_config(live.data["models.config"])["ranker"] == Configured(
        (48,), (("stable", 48),)
    )
