"""The Helm chart on a real control plane of its own: install into namespaces
that enforce the `restricted` Pod Security profile, RBAC checked with
`kubectl auth can-i` as the chart's ServiceAccount, the operator run with exactly
that account's credentials, two replicas with one leader (the leader killed
mid-change), upgrade, and uninstall with and without keeping the CRD.

kwok runs no containers, so the chart's operator pods are scheduled and admitted
but run nothing; the operator under test runs beside them as `tfops run`, with a
token of the chart's ServiceAccount."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.conftest import REPO
from tfops.crd import CRD_NAME
from tfops.devcluster import LocalCluster, find_control_plane
from tfops.testing.fleet import (
    ModelServers,
    OperatorProcess,
    create_models_claim,
    create_namespace,
    load_example,
)
from tfops.testing.support import wait_for

RELEASE, SYSTEM, TEAM, OUTSIDE = "tfops", "tfops-system", "team-a", "outside"
ACCOUNT = f"system:serviceaccount:{SYSTEM}:{RELEASE}"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass
class Installed:
    cluster: LocalCluster
    api: client.ApiClient
    helm_binary: Path
    account_kubeconfig: Path | None = None
    operators: list[Any] = field(default_factory=list)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.helm_binary), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def can(self, verb: str, resource: str, namespace: str | None = None) -> bool:
        """`kubectl auth can-i` as the chart's ServiceAccount; `resource` may name
        a subresource after a colon (pods:eviction) or an object after a slash."""
        resource, _, subresource = resource.partition(":")
        args = ["auth", "can-i", verb, resource, f"--as={ACCOUNT}"]
        args += [f"--subresource={subresource}"] if subresource else []
        args += [f"--namespace={namespace}"] if namespace else []
        result = self.cluster.kubectl(*args, check=False)
        return result.stdout.strip() == "yes"

    def start_operator(self) -> OperatorProcess:
        """`tfops run` with the chart ServiceAccount's token, not as admin."""
        assert self.account_kubeconfig is not None
        manager = OperatorProcess.start(
            self.cluster,
            "",
            "--leader-elect",
            f"--leader-election-namespace={SYSTEM}",
            f"--namespace={TEAM}",
            env={"KUBECONFIG": str(self.account_kubeconfig)},
        )
        running = manager.__enter__()
        self.operators.append((manager, running))
        return running


@pytest.fixture(scope="module")
def installed(tools: Path) -> Iterator[Installed]:
    workdir = os.environ.get("TFOPS_TEST_WORKDIR")
    with LocalCluster(
        find_control_plane(), Path(workdir) / "chart" if workdir else None, log=print
    ) as local:
        api = config.new_client_from_config(str(local.kubeconfig))
        for name, labels in ((SYSTEM, RESTRICTED), (TEAM, RESTRICTED), (OUTSIDE, {})):
            create_namespace(api, name, labels)
        state = Installed(local, api, tools / "helm")
        try:
            yield state
        finally:
            for manager, _ in reversed(state.operators):
                manager.__exit__(None, None, None)


def _account_kubeconfig(state: Installed) -> Path:
    """A kubeconfig holding a token of the chart's ServiceAccount (TokenRequest)."""
    token = client.CoreV1Api(state.api).create_namespaced_service_account_token(
        RELEASE,
        SYSTEM,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    )
    admin = yaml.safe_load(state.cluster.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": "tfops", "user": {"token": token.status.token}}],
        "contexts": [
            {"name": "tfops", "context": {"cluster": cluster_entry["name"], "user": "tfops"}}
        ],
        "current-context": "tfops",
    }
    path = state.cluster.workdir / "tfops-account.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def test_install_into_namespaces_that_enforce_the_restricted_profile(
    installed: Installed,
) -> None:
    installed.helm(
        "install", RELEASE, str(REPO / "charts" / "tfops"), "-n", SYSTEM,
        "--set", f"watchNamespaces={{{TEAM}}}",
    )  # fmt: skip
    installed.cluster.wait_for_crd(CRD_NAME)
    core = client.CoreV1Api(installed.api)

    # Both operator pods admitted by Pod Security (restricted) and scheduled.
    def scheduled() -> list[Any] | None:
        # Waits for both to be placed: returning once one was raced the scheduler.
        items = core.list_namespaced_pod(SYSTEM).items
        placed = [p for p in items if p.spec.node_name]
        return placed if len(items) == len(placed) == 2 else None

    pods = wait_for(scheduled, timeout=60, what="the chart's two operator pods, scheduled")
    assert len(pods) == 2
    refused = [
        e.message for e in core.list_namespaced_event(SYSTEM).items if e.reason == "FailedCreate"
    ]
    assert refused == []


def test_rbac_allows_what_the_operator_does_and_nothing_more(installed: Installed) -> None:
    can = installed.can
    for verb, resource, namespace in [
        ("watch", "modelservers.serving.tfops.dev", TEAM),
        ("patch", "modelservers.serving.tfops.dev:status", TEAM),
        ("create", "deployments.apps", TEAM),
        ("patch", "deployments.apps", TEAM),
        ("patch", "configmaps", TEAM),
        ("delete", "horizontalpodautoscalers.autoscaling", TEAM),
        ("create", "pods:eviction", TEAM),
        ("list", "pods.metrics.k8s.io", TEAM),
        ("create", "events", TEAM),
        ("update", "leases.coordination.k8s.io/tfops-leader", SYSTEM),
    ]:
        assert can(verb, resource, namespace), f"cannot {verb} {resource} in {namespace}"
    for verb, resource, namespace in [
        ("get", "secrets", TEAM),
        ("list", "secrets", SYSTEM),
        ("delete", "pods", TEAM),
        ("delete", "deployments.apps", TEAM),
        ("patch", "deployments.apps", OUTSIDE),
        ("list", "pods", OUTSIDE),
        ("list", "modelservers.serving.tfops.dev", OUTSIDE),
        ("update", "leases.coordination.k8s.io/someone-else", SYSTEM),
        ("create", "clusterroles.rbac.authorization.k8s.io", None),
        ("list", "nodes", None),
        ("get", "namespaces", None),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    ]:
        assert not can(verb, resource, namespace), f"can {verb} {resource} in {namespace}"


def test_the_operator_runs_with_only_the_charts_credentials(installed: Installed) -> None:
    installed.account_kubeconfig = _account_kubeconfig(installed)
    operator = installed.start_operator()
    wait_for(lambda: operator.metric("tfops_leader") == 1, timeout=60, what="leadership")
    create_models_claim(installed.api, TEAM)
    servers = ModelServers(installed.api, TEAM)
    servers.create(load_example("minimal"))
    servers.wait_condition("minimal", "Ready", "True", timeout=120)
    # The serving pods it created were admitted under the restricted profile too.
    pods = client.CoreV1Api(installed.api).list_namespaced_pod(TEAM).items
    assert len(pods) == 1 and pods[0].spec.security_context.run_as_non_root
    log = operator.log.read_text()
    assert "Forbidden" not in log and " 403" not in log, operator.log_tail()


def test_a_standby_takes_over_and_finishes_an_in_flight_change(installed: Installed) -> None:
    (_, leader) = installed.operators[0]
    standby = installed.start_operator()
    time.sleep(6)  # a renewal period: the standby has seen the Lease held
    assert standby.metric("tfops_leader") == 0 and leader.metric("tfops_leader") == 1
    servers = ModelServers(installed.api, TEAM)
    leader.kill()  # a node loss: no goodbye, the Lease just stops being renewed
    killed = time.monotonic()
    servers.patch("minimal", {"replicas": 2})
    wait_for(lambda: standby.metric("tfops_leader") == 1, timeout=60, what="the standby to lead")
    took_over = time.monotonic() - killed
    # The Lease lasts 15 s; the standby checks every 5 s.
    assert took_over < 30, took_over
    # Ready may still be the condition of the old generation: wait for the new one.
    wait_for(
        lambda: (
            servers.get("minimal")["status"].get("readyReplicas") == 2
            and servers.get("minimal")["status"].get("observedGeneration")
            == servers.get("minimal")["metadata"]["generation"]
        ),
        timeout=90,
        what="the new leader to finish the change",
    )
    servers.wait_condition("minimal", "Ready", "True", timeout=90)


def test_upgrade_then_uninstall_keeps_the_crd_and_the_fleets(installed: Installed) -> None:
    chart = str(REPO / "charts" / "tfops")
    installed.helm(
        "upgrade", RELEASE, chart, "-n", SYSTEM, "--reuse-values",
        "--set", "operator.resyncSeconds=5",
    )  # fmt: skip
    deployment = client.AppsV1Api(installed.api).read_namespaced_deployment(RELEASE, SYSTEM)
    assert "--resync-seconds=5" in deployment.spec.template.spec.containers[0].args

    installed.helm("uninstall", RELEASE, "-n", SYSTEM)
    extensions = client.ApiextensionsV1Api(installed.api)
    assert extensions.read_custom_resource_definition(CRD_NAME)  # kept (crds.keep)
    assert ModelServers(installed.api, TEAM).get("minimal")  # and the fleets with it
    rbac = client.RbacAuthorizationV1Api(installed.api)
    assert not [r for r in rbac.list_namespaced_role(TEAM).items if r.metadata.name == RELEASE]
    assert not client.AppsV1Api(installed.api).list_namespaced_deployment(SYSTEM).items

    # Installed again (adopting the kept CRD) without keep, an uninstall removes it.
    installed.helm(
        "install", RELEASE, chart, "-n", SYSTEM, "--set", "crds.keep=false",
        "--set", f"watchNamespaces={{{TEAM}}}",
    )  # fmt: skip
    installed.helm("uninstall", RELEASE, "-n", SYSTEM)
    wait_for(
        lambda: (
            CRD_NAME
            not in {c.metadata.name for c in extensions.list_custom_resource_definition().items}
        ),
        timeout=60,
        what="the CRD to go",
    )
