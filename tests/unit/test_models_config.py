"""models.config is printed by protobuf from the message and parses back, with TF
Serving's own message classes, to exactly the declared models: whatever the strings."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_serving.config import model_server_config_pb2

from tfops.model import PARENT_SEGMENT, ModelServerSpec, ModelSpec, VersionPolicy, parse_spec
from tfops.plan import make_plan
from tfops.render import Owner, render_all
from tfops.render.configmap import render_batching_config, render_models_config


def _parse_with_tf_serving(text: str) -> Any:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(text, config)
    return config


HOSTILE = [
    'evil"\n}\nconfig {\n  name: "injected"',
    "# not a comment",
    "brace } and { more",
    'back\\slash \\" escape',
    "ünïcödé ☃ 模型",
    "tab\tand\rcarriage",
    "'single' \"double\"",
]


def test_hostile_strings_in_every_free_text_field_stay_data() -> None:
    # The spec's patterns forbid most of these in names and labels; the printer
    # must be safe even where a pattern is loosened, so build the spec directly.
    models = tuple(
        ModelSpec(
            name=text,
            base_path=f"/models/{text}",
            version_policy=VersionPolicy(specific=(1, 2)),
            version_labels={text: 2},
        )
        for text in HOSTILE
    )
    spec = ModelServerSpec(models=models)
    parsed = _parse_with_tf_serving(render_models_config(spec))
    configs = list(parsed.model_config_list.config)
    assert [c.name for c in configs] == HOSTILE
    assert [c.base_path for c in configs] == [f"/models/{t}" for t in HOSTILE]
    assert [dict(c.version_labels) for c in configs] == [{t: 2} for t in HOSTILE]
    assert all(list(c.model_version_policy.specific.versions) == [1, 2] for c in configs)


def test_our_messages_print_exactly_what_tf_servings_own_messages_print() -> None:
    spec = parse_spec(
        {
            "models": [
                {
                    "name": "a",
                    "basePath": "/models/a",
                    "versionPolicy": {"specific": [3, 1]},
                    "versionLabels": {"stable": 1, "canary": 3},
                },
                {"name": "b", "basePath": "gs://bucket/b", "versionPolicy": {"latest": 2}},
                {
                    "name": "c",
                    "basePath": "gs://bucket/c",
                    "versionPolicy": {"all": True, "acknowledgeAllVersions": True},
                },
            ],
            "modelStorage": {"claimName": "m"},
        }
    )
    ours = render_models_config(spec)
    theirs = text_format.MessageToString(_parse_with_tf_serving(ours))
    assert ours == theirs
    policy = _parse_with_tf_serving(ours).model_config_list.config[2].model_version_policy
    assert policy.WhichOneof("policy_choice") == "all"


def test_batching_config_uses_wrapper_fields_as_tf_serving_reads_them() -> None:
    spec = parse_spec(
        {
            "models": [{"name": "a", "basePath": "gs://b/a"}],
            "batching": {
                "maxBatchSize": 64,
                "allowedBatchSizes": [16, 32, 64],
                "padVariableLengthInputs": True,
                "largeBatchSplitting": {"maxExecutionBatchSize": 32},
            },
        }
    )
    text = render_batching_config(make_plan(spec))
    assert text is not None
    lines = text.splitlines()
    assert "max_batch_size {" in lines and "  value: 64" in lines
    assert lines.count("allowed_batch_sizes: 16") == 1
    assert "pad_variable_length_inputs: true" in lines
    assert "enable_large_batch_splitting {" in lines


names = st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)
labels = st.from_regex(r"[a-zA-Z0-9_]{1,12}", fullmatch=True)
paths = st.text(min_size=1, max_size=30).filter(
    lambda t: re.search(PARENT_SEGMENT, f"/models/{t}") is None
)


@st.composite
def model_specs(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    models = []
    for name in chosen:
        model: dict[str, Any] = {
            "name": name,
            "basePath": draw(st.sampled_from(["/models/", "gs://"])) + draw(paths),
        }
        kind = draw(st.sampled_from(["default", "latest", "specific", "all"]))
        if kind == "latest":
            model["versionPolicy"] = {"latest": draw(st.integers(1, 64))}
        elif kind == "specific":
            versions = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=5, unique=True))
            model["versionPolicy"] = {"specific": versions}
            model["versionLabels"] = {
                label: draw(st.sampled_from(versions))
                for label in draw(st.lists(labels, max_size=3, unique=True))
            }
        elif kind == "all":
            model["versionPolicy"] = {"all": True, "acknowledgeAllVersions": True}
        if draw(st.booleans()):
            model["size"] = f"{draw(st.integers(1, 4096))}Mi"
        models.append(model)
    spec: dict[str, Any] = {"models": models, "modelStorage": {"claimName": "models"}}
    if any(m["versionPolicy"].get("all") for m in models if "versionPolicy" in m):
        spec["resources"] = {"limits": {"memory": "512Gi"}}
    return spec


@settings(max_examples=150, deadline=None)
@given(model_specs())
def test_every_valid_spec_renders_and_its_models_config_parses_back(raw: dict[str, Any]) -> None:
    spec = parse_spec(raw)
    objects = render_all(Owner("fleet", "ns", "uid"), make_plan(spec))
    assert [o["kind"] for o in objects][:4] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    (configmap,) = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    parsed = _parse_with_tf_serving(configmap["data"]["models.config"])
    configs = list(parsed.model_config_list.config)
    assert [(c.name, c.base_path) for c in configs] == [
        (m["name"], m["basePath"]) for m in raw["models"]
    ]
    for config, model in zip(configs, raw["models"], strict=True):
        policy = model.get("versionPolicy", {"latest": 1})
        choice = config.model_version_policy.WhichOneof("policy_choice")
        if "specific" in policy:
            # Written in ascending order: TF Serving treats them as a set.
            assert list(config.model_version_policy.specific.versions) == sorted(policy["specific"])
        elif "latest" in policy:
            assert config.model_version_policy.latest.num_versions == policy["latest"]
        else:
            assert choice == "all"
        assert dict(config.version_labels) == model.get("versionLabels", {})
