"""Rendered objects and config files, against reviewed golden files."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tfops.crd import to_yaml
from tfops.model import parse_spec
from tfops.plan import make_plan
from tfops.render import Owner, render_all
from tfops.render.configmap import render_config_files
from tfops.render.deployment import render_flags

EXAMPLES = sorted(p.stem for p in (REPO / "examples").glob("*.yaml"))
GOLDEN = REPO / "tests" / "golden"


def _render(example: str) -> list[dict[str, Any]]:
    manifest = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
    spec = parse_spec(manifest["spec"])
    owner = Owner(manifest["metadata"]["name"], "ml", "00000000-0000-0000-0000-000000000001")
    return render_all(owner, make_plan(spec))


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def test_every_example_has_a_golden_file() -> None:
    assert {"minimal", "multi-model", "gpu", "batching", "autoscaling"} <= set(EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_rendered_objects_match_the_golden_file(example: str, update_golden: bool) -> None:
    objects = _render(example)
    text = "".join(f"---\n{to_yaml(obj)}" for obj in objects)
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            # Config files as TF Serving reads them, reviewable line by line.
            for name, content in obj["data"].items():
                text += f"--- # {name}\n{content}"
    golden = GOLDEN / f"{example}.yaml"
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), "run pytest --update-golden and review the new file"
    assert text == golden.read_text(), f"{golden} differs; if intended, --update-golden"


def _flags(**spec: Any) -> list[str]:
    parsed = parse_spec({"models": [{"name": "m", "basePath": "gs://b/m"}], **spec})
    plan = make_plan(parsed)
    return render_flags(plan, render_config_files(plan))


def test_never_renders_a_flag_the_image_does_not_know() -> None:
    assert "--enable_grpc_healthcheck_service=true" in _flags()
    old = _flags(image="tensorflow/serving:2.14.0")
    assert not any(f.startswith("--enable_grpc_healthcheck_service") for f in old)
    old_spec = {
        "models": [{"name": "m", "basePath": "gs://b/m"}],
        "image": "tensorflow/serving:2.14.0",
    }
    objects = render_all(Owner("m", "ml", "u"), make_plan(parse_spec(old_spec)))
    container = _kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    # Without the gRPC health service, probes fall back to the port opening.
    assert container["readinessProbe"]["tcpSocket"] == {"port": 8500}


def test_threads_follow_the_cpu_limit_not_the_node() -> None:
    flags = _flags(resources={"limits": {"cpu": "6"}})
    assert "--tensorflow_intra_op_parallelism=6" in flags
    assert "--tensorflow_inter_op_parallelism=2" in flags
    assert "--rest_api_num_threads=12" in flags
    assert "--grpc_max_threads=24" in flags
    single = _flags(resources={"limits": {"cpu": "500m"}})
    assert "--tensorflow_intra_op_parallelism=1" in single
    assert "--tensorflow_inter_op_parallelism=1" in single


def test_batching_settings_restart_pods_but_model_changes_do_not() -> None:
    def template(**spec: Any) -> dict[str, Any]:
        base = {
            "models": [{"name": "m", "basePath": "gs://b/m", "size": "100Mi"}],
            "resources": {"limits": {"memory": "2Gi"}},
        }
        parsed = parse_spec({**base, **spec})
        deployment = _kind(render_all(Owner("m", "ml", "u"), make_plan(parsed)), "Deployment")
        return deployment["spec"]["template"]

    plain = template()
    more_models = template(
        models=[
            {"name": "m", "basePath": "gs://b/m", "size": "100Mi"},
            {"name": "n", "basePath": "gs://b/n", "size": "50Mi"},
        ]
    )
    batched = template(batching={"maxBatchSize": 32})
    assert more_models == plain
    assert batched != plain
    assert (
        batched["metadata"]["annotations"]["serving.tfops.dev/startup-config-hash"]
        != plain["metadata"]["annotations"]["serving.tfops.dev/startup-config-hash"]
    )


def test_the_golden_directory_has_no_stale_files() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} == set(EXAMPLES)


def test_rendered_manifests_are_valid_yaml_documents() -> None:
    for example in EXAMPLES:
        for obj in _render(example):
            assert yaml.safe_load(to_yaml(obj)) == obj


def _deployment(spec: dict[str, Any]) -> dict[str, Any]:
    objects = render_all(Owner("search", "ml", "u-1"), make_plan(parse_spec(spec)))
    return _kind(objects, "Deployment")


TRAFFIC_SPEC = {"models": [{"name": "ranker", "basePath": "gs://bucket/ranker", "size": "100Mi"}]}


def test_pods_drain_before_they_stop_and_the_grace_period_outlasts_the_drain() -> None:
    default = _deployment(TRAFFIC_SPEC)["spec"]["template"]["spec"]
    (container,) = default["containers"]
    # The kubelet's own sleep: no shell in the image, restricted Pod Security holds.
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    assert default["terminationGracePeriodSeconds"] == 30

    long = _deployment({**TRAFFIC_SPEC, "traffic": {"drainSeconds": 45}})["spec"]["template"]
    assert long["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 45
    assert long["spec"]["terminationGracePeriodSeconds"] == 55

    off = _deployment({**TRAFFIC_SPEC, "traffic": {"drainSeconds": 0}})["spec"]["template"]
    assert "lifecycle" not in off["spec"]["containers"][0]
    assert off["spec"]["terminationGracePeriodSeconds"] == 30


def test_grpc_connections_are_re_made_so_clients_spread_over_new_pods() -> None:
    def channel_flag(spec: dict[str, Any]) -> list[str]:
        args = _deployment(spec)["spec"]["template"]["spec"]["containers"][0]["args"]
        return [a for a in args if a.startswith("--grpc_channel_arguments=")]

    assert channel_flag(TRAFFIC_SPEC) == [
        "--grpc_channel_arguments=grpc.max_connection_age_ms=300000,"
        "grpc.max_connection_age_grace_ms=30000"
    ]
    tuned = {"maxConnectionAgeSeconds": 60, "maxConnectionAgeGraceSeconds": 5}
    assert channel_flag({**TRAFFIC_SPEC, "traffic": tuned}) == [
        "--grpc_channel_arguments=grpc.max_connection_age_ms=60000,"
        "grpc.max_connection_age_grace_ms=5000"
    ]
    assert channel_flag({**TRAFFIC_SPEC, "traffic": {"maxConnectionAgeSeconds": 0}}) == []


def test_the_rendered_channel_arguments_are_ones_tf_serving_parses() -> None:
    """What TF Serving's parser (the stand-in's, which refuses more) makes of them:
    int values, as server.cc passes a value that parses as int32."""
    from tfops.testing.standin.tfserving import Options

    args = _deployment({**TRAFFIC_SPEC, "traffic": {"maxConnectionAgeSeconds": 86400}})
    options = Options.from_args(args["spec"]["template"]["spec"]["containers"][0]["args"])
    parsed = dict(options.grpc_channel_arguments)
    assert parsed["grpc.max_connection_age_ms"] == "86400000"
    assert int(parsed["grpc.max_connection_age_ms"]) < 2**31
