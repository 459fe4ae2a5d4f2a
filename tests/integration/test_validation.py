"""Bad input never reaches TF Serving: the apiserver refuses what the CRD can express,
the operator refuses the rest and leaves the running fleet as it was."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.bad_specs import BAD_SPECS, BadSpec
from tests.spec_mutations import api_fields, mutated_specs, related
from tfops.model import GROUP, PLURAL, VERSION, parse_spec
from tfops.schema import SpecInvalid
from tfops.testing.fleet import (
    RESYNC_SECONDS,
    ModelServers,
    add_versions,
    events_for,
    load_example,
)
from tfops.testing.support import wait_for


@pytest.fixture(scope="module")
def refusals(api: client.ApiClient, crd: None) -> str:
    core = client.CoreV1Api(api)
    name = "refusals"
    if not [n for n in core.list_namespace().items if n.metadata.name == name]:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda case: case.id)
def test_apiserver_refuses_bad_spec_naming_the_field(
    api: client.ApiClient, refusals: str, case: BadSpec
) -> None:
    custom = client.CustomObjectsApi(api)
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelServer",
        "metadata": {"name": case.id[:50].rstrip("-")},
        "spec": case.spec(),
    }
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, refusals, PLURAL, manifest)
    assert refused.value.status == 422, refused.value.body
    body = refused.value.body
    assert (case.api_path or case.path) in body, body
    assert (case.api_message or case.message) in body, body


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=mutated_specs())
def test_the_parser_and_the_apiserver_accept_and_refuse_the_same_specs(
    api: client.ApiClient, refusals: str, spec: dict[str, Any]
) -> None:
    try:
        parse_spec(spec)
        refused_by_parser: list[str] | None = None
    except SpecInvalid as invalid:
        refused_by_parser = [error.path for error in invalid.errors]
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP,
            VERSION,
            refusals,
            PLURAL,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServer",
             "metadata": {"name": "differential"}, "spec": spec},
            dry_run="All",
            # What kubectl apply asks for: unknown fields are errors, not dropped.
            field_validation="Strict",
        )  # fmt: skip
        refused_by_apiserver: list[str] | None = None
    except ApiException as error:
        assert error.status in (400, 422), error.body
        refused_by_apiserver = api_fields(json.loads(error.body))
    assert (refused_by_parser is None) == (refused_by_apiserver is None), (
        refused_by_parser,
        refused_by_apiserver,
    )
    if refused_by_parser is not None and refused_by_apiserver is not None:
        # Both name the same field (or one a field under the other).
        assert any(
            related(mine, theirs) for mine in refused_by_parser for theirs in refused_by_apiserver
        ), (refused_by_parser, refused_by_apiserver)


def test_an_invalid_name_is_refused_by_the_apiserver(api: client.ApiClient, refusals: str) -> None:
    custom = client.CustomObjectsApi(api)
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelServer",
        "metadata": {"name": "x" * 55},
        "spec": {"models": [{"name": "m", "basePath": "gs://b/m"}]},
    }
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, refusals, PLURAL, manifest)
    assert "metadata.name must be at most 50" in refused.value.body


@pytest.mark.usefixtures("operator")
def test_an_invalid_edit_is_refused_and_leaves_the_running_fleet_untouched(
    api: client.ApiClient, namespace: str, models_claim: str, model_store: Path
) -> None:
    manifest = load_example("multi-model")
    for base_path, versions in (("/models/ranker", (47, 48)), ("/models/embedder", (1,))):
        add_versions(model_store, base_path, *versions)
    servers = ModelServers(api, namespace)
    servers.create(manifest)
    servers.wait_condition("recommender", "Ready", "True", "AllModelsAvailable", timeout=120)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployment = apps.read_namespaced_deployment("recommender", namespace)
    config_map = core.read_namespaced_config_map("recommender-config", namespace)

    # Passes the schema, but 2Gi cannot hold 1Gi x 2 versions + 512Mi + a transition.
    servers.patch("recommender", {"resources": {"limits": {"memory": "2Gi", "cpu": "4"}}})
    ready = servers.wait_condition("recommender", "Ready", "False", "InvalidSpec")
    assert "spec.resources.limits.memory: 2Gi cannot hold the declared models" in ready["message"]
    assert "needs at least" in ready["message"]
    wait_for(
        lambda: any(
            e.reason == "InvalidSpec" and "2Gi cannot hold" in e.message
            for e in events_for(api, namespace, "recommender")
        ),
        timeout=20,
        what="an InvalidSpec event",
    )

    time.sleep(2 * RESYNC_SECONDS)
    after = apps.read_namespaced_deployment("recommender", namespace)
    assert after.metadata.resource_version == deployment.metadata.resource_version
    assert (
        core.read_namespaced_config_map("recommender-config", namespace).metadata.resource_version
        == config_map.metadata.resource_version
    )
    status = servers.get("recommender")["status"]
    assert status["effective"]["memoryLimit"] == "9Gi"  # what the fleet still runs with

    servers.patch("recommender", {"resources": {"limits": {"memory": "12Gi", "cpu": "4"}}})
    servers.wait_condition("recommender", "Ready", "True", "AllModelsAvailable", timeout=120)
    assert servers.get("recommender")["status"]["effective"]["memoryLimit"] == "12Gi"
