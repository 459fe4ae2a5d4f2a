"""Version transitions through TF Serving's constraints: labels move only to
versions AVAILABLE on every running pod, old versions stay until then, failures
roll back, and the state in status carries across reconciles (and restarts)."""

from __future__ import annotations

from typing import Any

from tfops.commands.promote import judge
from tfops.model import ModelSpec, parse_spec
from tfops.promotion import Configured, Seen, Settings, Step, planned_steps, promoted_model, step

SETTINGS = Settings(grace_seconds=30, timeout_seconds=300)
T0 = 1_800_000_000.0
LIVE = Configured((47,), (("stable", 47),))


def _model(versions: list[int], labels: dict[str, int] | None = None) -> ModelSpec:
    raw: dict[str, Any] = {"name": "ranker", "basePath": "/models/ranker"}
    raw["versionPolicy"] = {"specific": versions}
    if labels:
        raw["versionLabels"] = labels
    spec = parse_spec({"models": [raw], "modelStorage": {"claimName": "models"}})
    return spec.models[0]


def _seen(pods: int = 2, **available: int) -> Seen:
    return Seen(pods, {int(v.removeprefix("v")): n for v, n in available.items()})


def _step(
    model: ModelSpec,
    live: Configured | None,
    seen: Seen,
    previous: dict[str, Any] | None = None,
    *,
    at: float = 0.0,
    generation: int = 2,
    memory_error: str | None = None,
) -> Step:
    return step(
        model,
        live,
        seen,
        previous,
        now=T0 + at,
        generation=generation,
        settings=SETTINGS,
        memory_error=memory_error,
    )


def test_a_new_model_is_written_as_declared() -> None:
    result = _step(_model([1], {"stable": 1}), None, _seen())
    assert result.write == Configured((1,), (("stable", 1),))
    assert result.record is None and result.event is None


def test_an_unchanged_model_needs_no_transition() -> None:
    result = _step(_model([47], {"stable": 47}), LIVE, _seen(v47=2))
    assert result.write == LIVE and result.record is None and result.event is None


def test_moving_stable_from_47_to_48_goes_in_three_steps() -> None:
    model = _model([48], {"stable": 48})
    loading = _step(model, LIVE, _seen(v47=2))
    # 1. Serve both; the label stays on 47 until 48 is AVAILABLE everywhere.
    assert loading.write == Configured((47, 48), (("stable", 47),))
    assert loading.record is not None and loading.record["step"] == "Loading"
    assert loading.event is not None and loading.event[1] == "Promoting"
    # Available on one of two ready pods is not enough.
    half = _step(model, loading.write, _seen(v47=2, v48=1), loading.record, at=5)
    assert half.write == loading.write and half.event is None
    # 2. Everywhere: the label moves, 47 is still served during the grace.
    moved = _step(model, half.write, _seen(v47=2, v48=2), half.record, at=10)
    assert moved.write == Configured((47, 48), (("stable", 48),))
    assert moved.record is not None and moved.record["step"] == "Draining"
    assert moved.event is not None and moved.event[1] == "LabelsMoved"
    still = _step(model, moved.write, _seen(v47=2, v48=2), moved.record, at=30)
    assert still.write == moved.write
    # 3. After the grace: only what the spec names.
    done = _step(model, still.write, _seen(v47=2, v48=2), still.record, at=41)
    assert done.write == Configured((48,), (("stable", 48),))
    assert done.record is not None and done.record["step"] == "Done"
    assert done.event is not None and done.event[1] == "PromotionComplete"
    again = _step(model, done.write, _seen(v48=2), done.record, at=60)
    assert again.write == done.write and again.event is None


def test_a_plain_version_swap_keeps_the_old_version_until_the_new_one_serves() -> None:
    # Without this, TF Serving unloads 47 as soon as 48 stops loading, even if 48 failed.
    model = _model([48])
    live = Configured((47,))
    loading = _step(model, live, _seen(v47=2))
    assert loading.write == Configured((47, 48))
    served = _step(model, loading.write, _seen(v47=2, v48=2), loading.record, at=20)
    assert served.write == Configured((47, 48))
    assert served.event is not None and served.event[1] == "VersionsAvailable"


def test_a_failed_load_rolls_back_and_stays_rolled_back_until_the_spec_changes() -> None:
    model = _model([48], {"stable": 48})
    loading = _step(model, LIVE, _seen(v47=2))
    broken = Seen(2, {47: 2}, {48: "Failed to load: file is corrupt"})
    failed = _step(model, loading.write, broken, loading.record, at=8)
    assert failed.write == LIVE
    assert failed.failure is not None and "file is corrupt" in failed.failure
    assert "rolled back to versions 47 (labels stable=47)" in failed.failure
    assert failed.record is not None and failed.record["step"] == "RolledBack"
    assert failed.event is not None and failed.event[:2] == ("Warning", "PromotionRolledBack")
    held = _step(model, failed.write, broken, failed.record, at=60)
    assert held.write == LIVE and held.event is None and held.failure == failed.failure
    # An edit of the spec (a new generation) tries again.
    retry = _step(model, held.write, broken, held.record, at=90, generation=3)
    assert retry.record is not None and retry.record["step"] == "RolledBack"
    assert retry.event is not None  # the same version fails again, and says so


def test_a_version_that_never_becomes_available_is_rolled_back_after_the_time_out() -> None:
    model = _model([48], {"stable": 48})
    loading = _step(model, LIVE, _seen(v47=2))
    waiting = _step(model, loading.write, _seen(v47=2, v48=1), loading.record, at=299)
    assert waiting.failure is None
    late = _step(model, waiting.write, _seen(v47=2, v48=1), waiting.record, at=301)
    assert late.write == LIVE
    assert late.failure is not None and "not AVAILABLE on every running pod within 300s" in (
        late.failure
    )


def test_without_a_ready_pod_the_time_out_waits_for_pods_to_report() -> None:
    model = _model([48], {"stable": 48})
    loading = _step(model, LIVE, _seen(v47=2))
    nobody = _step(model, loading.write, Seen(0), loading.record, at=600)
    assert nobody.failure is None and nobody.write == loading.write


def test_a_transition_the_memory_limit_cannot_hold_is_refused_before_it_starts() -> None:
    result = _step(_model([48], {"stable": 48}), LIVE, _seen(v47=2), memory_error="too big")
    assert result.write == LIVE and result.failure == "too big"
    assert result.record is not None and result.record["step"] == "Refused"


def test_a_new_target_mid_transition_keeps_the_last_settled_config_as_its_origin() -> None:
    loading = _step(_model([48], {"stable": 48}), LIVE, _seen(v47=2))
    model = _model([49], {"stable": 49})
    redirected = _step(model, loading.write, _seen(v47=2, v48=2), loading.record, at=5)
    assert redirected.write == Configured((47, 49), (("stable", 47),))
    assert redirected.record is not None
    assert Configured.from_json(redirected.record["from"]) == LIVE
    assert redirected.event is not None and "version 49" in redirected.event[2]


def test_a_new_label_on_a_version_not_yet_everywhere_waits() -> None:
    model = _model([47, 48], {"stable": 47, "canary": 48})
    result = _step(model, LIVE, _seen(v47=2, v48=1))
    assert result.write == Configured((47, 48), (("stable", 47),))


def test_records_round_trip_through_json() -> None:
    configured = Configured((3, 7), (("a", 3), ("b", 7)))
    assert Configured.from_json(configured.to_json()) == configured
    assert Configured.from_json(Configured(None).to_json()) == Configured(None)


def test_promote_serves_the_new_version_plus_what_other_labels_pin() -> None:
    raw = {
        "name": "ranker",
        "basePath": "/models/ranker",
        "versionPolicy": {"specific": [47, 48]},
        "versionLabels": {"stable": 47, "canary": 48},
    }
    changed = promoted_model(raw, 49, "stable")
    assert changed["versionPolicy"] == {"specific": [48, 49]}
    assert changed["versionLabels"] == {"canary": 48, "stable": 49}
    assert promoted_model({"name": "a", "basePath": "/models/a"}, 3, None)["versionPolicy"] == {
        "specific": [3]
    }


def test_the_dry_run_steps_name_each_stage() -> None:
    steps = planned_steps("ranker", LIVE, Configured((48,), (("stable", 48),)), 30)
    assert steps == [
        "load version 48 of ranker beside versions 47 (labels stable=47), labels staying "
        "put (stable on 47)",
        "wait until version 48 is AVAILABLE on every running pod (a failure or the time-out "
        "rolls back to the current config)",
        "move label stable to 48",
        "after 30s, stop serving version 47",
        "serve versions 48 (labels stable=48)",
    ]
    assert planned_steps("ranker", LIVE, LIVE, 30)[0].startswith("nothing to do")


def _status(step: str, *, generation: int = 5, ready: str = "True") -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "conditions": [{"type": "Ready", "status": ready, "observedGeneration": generation}],
        "promotions": [
            {
                "model": "ranker",
                "to": {"versions": [48], "labels": {"stable": 48}},
                "step": step,
                "generation": 5,
                "message": "Model ranker version 48 failed to load: boom",
            }
        ],
    }


def test_promote_follows_status_to_a_verdict() -> None:
    desired = Configured((48,), (("stable", 48),))
    assert judge(_status("Loading", generation=4), "ranker", desired, 5).code is None
    assert judge(_status("Loading", ready="False"), "ranker", desired, 5).code is None
    assert judge(_status("Done"), "ranker", desired, 5).code == 0
    assert judge(_status("Done", ready="False"), "ranker", desired, 5).code is None
    failed = judge(_status("RolledBack", ready="False"), "ranker", desired, 5)
    assert failed.code == 3 and "boom" in failed.text
