"""The operator's parser refuses what the CRD refuses, naming the field and the fix;
what the schema cannot express, the plan refuses."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.bad_specs import BAD_SPECS, VALID_SPEC, BadSpec
from tests.spec_mutations import mutated_specs
from tfops.model import VOLUME_SOURCES, parse_spec
from tfops.plan import make_plan
from tfops.render import Owner, render_all
from tfops.schema import SpecInvalid


def test_the_base_spec_of_the_bad_cases_is_valid() -> None:
    make_plan(parse_spec(copy.deepcopy(VALID_SPEC)))


def test_every_bad_spec_has_its_own_id() -> None:
    # A repeated id would hide a case behind another in the test report.
    assert len({case.id for case in BAD_SPECS}) == len(BAD_SPECS)


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda case: case.id)
def test_refuses_bad_spec_naming_the_field(case: BadSpec) -> None:
    with pytest.raises(SpecInvalid) as refused:
        make_plan(parse_spec(case.spec()))
    matching = [e for e in refused.value.errors if e.path == case.path]
    assert matching, f"no error at {case.path}: {refused.value}"
    assert any(case.message in e.message for e in matching), str(refused.value)


def test_reports_every_error_at_once() -> None:
    spec = copy.deepcopy(VALID_SPEC)
    spec["replicas"] = -1
    spec["allocator"] = "tcmalloc"
    spec["bogus"] = True
    with pytest.raises(SpecInvalid) as refused:
        parse_spec(spec)
    paths = {e.path for e in refused.value.errors}
    assert {"spec.replicas", "spec.allocator", "spec.bogus"} <= paths


def _plan_errors(change: dict[str, object]) -> list[str]:
    spec = copy.deepcopy(VALID_SPEC)
    spec.update(change)
    with pytest.raises(SpecInvalid) as refused:
        make_plan(parse_spec(spec))
    return [str(e) for e in refused.value.errors]


def test_refuses_a_memory_limit_that_cannot_hold_the_models_and_one_transition() -> None:
    # Two 100Mi versions plus one transition at 2x, plus 256Mi: 856Mi at least.
    (error,) = _plan_errors({"resources": {"limits": {"memory": "512Mi"}}})
    assert error.startswith("spec.resources.limits.memory: 512Mi cannot hold")
    assert "needs at least 896Mi" in error
    assert "raise the limit" in error
    make_plan(parse_spec({**copy.deepcopy(VALID_SPEC), "resources": {"limits": {"memory": "1Gi"}}}))


def test_refuses_an_image_whose_version_cannot_be_read_without_serving_version() -> None:
    (error,) = _plan_errors({"image": "registry.example/serving@sha256:" + "a" * 64})
    assert error.startswith("spec.servingVersion:") and "set servingVersion" in error
    make_plan(
        parse_spec(
            {
                **copy.deepcopy(VALID_SPEC),
                "servingVersion": "2.18.0",
                "image": "registry.example/serving@sha256:" + "a" * 64,
            }
        )
    )


def test_refuses_tf_serving_older_than_2_5() -> None:
    (error,) = _plan_errors({"image": "tensorflow/serving:2.4.0"})
    assert error.startswith("spec.image:") and "older than 2.5" in error


def test_refuses_all_versions_without_a_memory_limit() -> None:
    spec = copy.deepcopy(VALID_SPEC)
    spec["models"][0]["versionPolicy"] = {"all": True, "acknowledgeAllVersions": True}
    del spec["models"][0]["versionLabels"]
    with pytest.raises(SpecInvalid) as refused:
        make_plan(parse_spec(spec))
    assert [e.path for e in refused.value.errors] == ["spec.resources.limits.memory"]
    assert "cannot count the versions" in str(refused.value)


def test_refuses_allow_growth_on_an_image_without_session_config_files() -> None:
    (error,) = _plan_errors(
        {"gpu": {"count": 1, "allowGrowth": True}, "image": "tensorflow/serving:2.7.0-gpu"}
    )
    assert error.startswith("spec.gpu.allowGrowth:") and "2.8" in error


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)
    ),
    max_leaves=12,
)


def _parse_plan_render(spec: object) -> None:
    try:
        parsed = parse_spec(spec)
        plan = make_plan(parsed)
    except SpecInvalid as invalid:
        assert invalid.errors and all(e.path.startswith("spec") for e in invalid.errors)
        return
    render_all(Owner("m", "ml", "uid"), plan)


@settings(max_examples=1500, derandomize=True, deadline=None)
@given(spec=mutated_specs())
def test_no_change_to_a_valid_spec_raises_anything_but_spec_invalid(spec: dict) -> None:
    _parse_plan_render(spec)


@settings(max_examples=1500, derandomize=True, deadline=None)
@given(spec=json_values)
def test_no_json_value_raises_anything_but_spec_invalid(spec: object) -> None:
    _parse_plan_render(spec)
    _parse_plan_render({"models": [{"name": "m", "basePath": "gs://b/m", "size": spec}]})
    _parse_plan_render({"models": [{"name": "m", "basePath": "gs://b/m", "versionLabels": spec}]})
    _parse_plan_render({"models": [{"name": "m", "basePath": "gs://b/m"}], "resources": spec})


def test_messages_show_values_as_the_user_wrote_them() -> None:
    with pytest.raises(SpecInvalid) as refused:
        parse_spec({"models": [{"name": "m", "basePath": "gs://b/m"}], "replicas": True})
    assert "not true" in str(refused.value) and "True" not in str(refused.value)


def test_a_trailing_newline_is_refused_as_the_apiserver_refuses_it() -> None:
    for change in (
        {"models": [{"name": "m\n", "basePath": "gs://b/m"}]},
        {"models": [{"name": "m", "basePath": "gs://b/m", "size": "1Gi\n"}]},
        {"models": [{"name": "m", "basePath": "gs://b/m"}], "servingVersion": "2.19.1\n"},
    ):
        with pytest.raises(SpecInvalid):
            parse_spec(change)


def test_a_null_field_is_read_as_absent_as_the_apiserver_stores_it() -> None:
    spec = parse_spec({"models": [{"name": "m", "basePath": "gs://b/m"}], "replicas": None})
    assert spec.replicas == 1


def test_volume_sources_are_every_source_a_kubernetes_volume_may_name() -> None:
    from kubernetes.client import V1Volume

    sources = set(V1Volume.attribute_map.values()) - {"name"}
    assert set(VOLUME_SOURCES) == sources
