"""Derived settings: memory planned from model sizes, start-up budgets from the
field reports' load times, threads from the CPU limit."""

from __future__ import annotations

from typing import Any

import pytest

from tfops.model import parse_spec
from tfops.plan import make_plan
from tfops.quantity import GiB, MiB
from tfops.schema import SpecInvalid


def _plan(**spec: Any) -> Any:
    return make_plan(parse_spec({"modelStorage": {"claimName": "m"}, **spec}))


def _one_model(size: str, **model: Any) -> list[dict[str, Any]]:
    return [{"name": "m", "basePath": "/models/m", "size": size, **model}]


def test_memory_is_derived_from_sizes_plus_one_transition() -> None:
    plan = _plan(models=_one_model("1Gi", versionPolicy={"specific": [1, 2]}))
    # 256 MiB server + 2.5 x (2 loaded versions + 1 transitioning) x 1 GiB
    assert plan.memory.limit_bytes == 256 * MiB + int(2.5 * 3 * GiB)
    assert plan.memory.request_bytes == plan.memory.limit_bytes
    assert plan.memory.basis == "declared sizes"


def test_memory_falls_back_to_a_default_without_sizes() -> None:
    plan = _plan(models=[{"name": "m", "basePath": "/models/m"}])
    assert (plan.memory.limit_bytes, plan.memory.basis) == (2 * GiB, "default")


def test_explicit_resources_win_when_large_enough() -> None:
    plan = _plan(
        models=_one_model("100Mi"),
        resources={
            "requests": {"memory": "1Gi", "cpu": "500m"},
            "limits": {"memory": "3Gi", "cpu": "3"},
        },
    )
    assert (plan.memory.request_bytes, plan.memory.limit_bytes) == (GiB, 3 * GiB)
    assert plan.memory.basis == "spec.resources"
    assert (plan.intra_op_threads, plan.grpc_max_threads) == (3, 12)


@pytest.mark.parametrize(
    ("size", "seed_upper_seconds"),
    [("100M", 30), ("1G", 120), ("5G", 480)],
    ids=["100MB", "1GB", "5GB"],
)
def test_startup_budget_covers_the_seeds_load_times(size: str, seed_upper_seconds: int) -> None:
    budget = _plan(models=_one_model(size)).startup_budget_seconds
    assert seed_upper_seconds <= budget <= 3 * seed_upper_seconds + 60


def test_startup_budget_is_generous_when_sizes_are_unknown_and_explicit_wins() -> None:
    assert _plan(models=[{"name": "m", "basePath": "/models/m"}]).startup_budget_seconds == 600
    assert (
        _plan(models=_one_model("1G"), probes={"startupBudgetSeconds": 45}).startup_budget_seconds
        == 45
    )


def test_gpu_fraction_is_the_sum_of_the_models_unless_given() -> None:
    models = [
        {"name": "a", "basePath": "/models/a", "gpuMemoryFraction": 0.25},
        {"name": "b", "basePath": "/models/b", "gpuMemoryFraction": 0.5},
    ]
    assert _plan(models=models, gpu={"count": 1}).gpu_memory_fraction == 0.75
    assert _plan(models=models, gpu={"count": 1, "memoryFraction": 0.8}).gpu_memory_fraction == 0.8


def test_gpu_fleets_default_to_the_gpu_image() -> None:
    assert (
        _plan(models=_one_model("1Gi"), gpu={"count": 1}).image == "tensorflow/serving:2.19.1-gpu"
    )
    assert _plan(models=_one_model("1Gi")).image == "tensorflow/serving:2.19.1"


def test_tf_servings_retries_fit_inside_the_start_up_budget_and_the_promotion_time_out() -> None:
    for size in ("10Mi", "1Gi", "6Gi"):
        plan = _plan(models=_one_model(size))
        window = plan.load_retries * plan.load_retry_interval_seconds
        assert window <= plan.startup_budget_seconds // 5
        assert plan.failure_report_seconds < plan.promotion_timeout_seconds


def test_a_promotion_time_out_shorter_than_tf_servings_failure_report_is_refused() -> None:
    with pytest.raises(SpecInvalid) as refused:
        _plan(models=_one_model("100Mi"), promotion={"timeoutSeconds": 30})
    (error,) = refused.value.errors
    assert error.path == "spec.promotion.timeoutSeconds"
    assert "use at least" in error.message and "30 is shorter" in error.message
    _plan(models=_one_model("100Mi"), promotion={"timeoutSeconds": 600})


def test_version_directories_are_listed_every_15s_or_30s_on_object_storage() -> None:
    assert _plan(models=_one_model("1Gi")).version_poll_seconds == 15
    uri = make_plan(parse_spec({"models": [{"name": "m", "basePath": "gs://b/m"}]}))
    assert uri.version_poll_seconds == 30
    assert _plan(models=_one_model("1Gi"), versionPollSeconds=120).version_poll_seconds == 120


def test_declared_sizes_beyond_any_node_are_refused() -> None:
    with pytest.raises(SpecInvalid) as refused:
        _plan(models=_one_model("16Ti", versionPolicy={"specific": [1, 2]}))
    assert refused.value.errors[0].path == "spec.models"


def test_gpu_fractions_are_summed_clamped_and_never_zero() -> None:
    models = [
        {"name": n, "basePath": f"/models/{n}", "gpuMemoryFraction": f}
        for n, f in (("a", 0.2), ("b", 0.4), ("c", 0.3), ("d", 0.1))
    ]
    assert _plan(models=models, gpu={"count": 1}).gpu_memory_fraction == 1.0
    tiny = [{"name": "a", "basePath": "/models/a", "gpuMemoryFraction": 0.01}]
    assert _plan(models=tiny, gpu={"count": 1}).gpu_memory_fraction == 0.01
