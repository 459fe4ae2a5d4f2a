"""Integration fixtures: one real control plane per session, a fresh namespace per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.integration.guard_scenarios import GuardScenarios
from tfops.crd import CRD_NAME
from tfops.devcluster import LocalCluster, find_control_plane
from tfops.testing.fleet import (
    CRD_FILE,
    OperatorProcess,
    create_models_claim,
    create_namespace,
)
from tfops.testing.standin.server import TFServingStandIn

GUARD_TESTS = Path(__file__).parent / "test_memory_guard.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)
    # The memory-guard scenarios take minutes of real time: they start with the
    # first integration test and are checked last, while the rest runs.
    guard = [item for item in items if Path(item.fspath) == GUARD_TESTS]
    items[:] = [item for item in items if item not in guard] + guard


@pytest.fixture(scope="session")
def guard_scenarios(tools: Path) -> Iterator[GuardScenarios]:
    workdir = os.environ.get("TFOPS_TEST_WORKDIR")
    with LocalCluster(
        find_control_plane(), Path(workdir) / "guard" if workdir else None, log=print
    ) as local:
        scenarios = GuardScenarios(
            local,
            config.new_client_from_config(str(local.kubeconfig)),
            prometheus_binary=tools / "prometheus",
        )
        try:
            scenarios.start()
            yield scenarios
        finally:
            scenarios.stop()


@pytest.fixture(autouse=True)
def _start_guard_scenarios_early(request: pytest.FixtureRequest) -> None:
    if any(Path(item.fspath) == GUARD_TESTS for item in request.session.items):
        request.getfixturevalue("guard_scenarios")


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    # Builds the control plane on first use (cached under ~/.cache/tfops).
    # TFOPS_TEST_WORKDIR keeps logs (operator, apiserver, audit) after the run.
    workdir = os.environ.get("TFOPS_TEST_WORKDIR")
    with LocalCluster(find_control_plane(), Path(workdir) if workdir else None, log=print) as local:
        yield local


@pytest.fixture(scope="session")
def api(cluster: LocalCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    raw = request.node.name.removeprefix("test_").lower()
    stem = re.sub(r"[^a-z0-9]+", "-", raw)[:40].strip("-")
    name = create_namespace(api, f"{stem}-{uuid.uuid4().hex[:6]}")
    yield name
    client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> None:
    cluster.install_crd(CRD_FILE, CRD_NAME)


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def standin(api: client.ApiClient, model_store: Path) -> Iterator[TFServingStandIn]:
    server = TFServingStandIn(api, model_store).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def operator(
    cluster: LocalCluster, crd: None, standin: TFServingStandIn
) -> Iterator[OperatorProcess]:
    with OperatorProcess.start(cluster, standin.url_template) as running:
        yield running


@pytest.fixture
def models_claim(api: client.ApiClient, namespace: str) -> str:
    """A bound PersistentVolumeClaim named `models`, as the examples expect."""
    return create_models_claim(api, namespace)
