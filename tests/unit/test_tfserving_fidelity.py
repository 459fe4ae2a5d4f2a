"""What tfops renders works on TF Serving as it really behaves: the rendered flags
and models.config, fed to the strict stand-in process (tfops.testing.standin.tfserving)
with TF Serving's real periods on a fake clock."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfops import promotion
from tfops.model import ModelServerSpec, parse_spec
from tfops.model_status import VersionStatus
from tfops.plan import Plan, make_plan
from tfops.promotion import Configured
from tfops.render import Owner, render_all
from tfops.render.configmap import MODELS_FILE, parse_models_config, render_models_config
from tfops.testing.standin.tfserving import (
    AVAILABLE,
    END,
    DirectoryLoader,
    ModelStore,
    Options,
    Process,
)


def _rendered(spec: ModelServerSpec) -> tuple[list[str], str]:
    """(container args, models.config) as the operator applies them."""
    objects = {obj["kind"]: obj for obj in render_all(Owner("f", "ml", "u"), make_plan(spec))}
    configmap, deployment = objects["ConfigMap"], objects["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["args"], configmap["data"][MODELS_FILE]


def _store(root: Path, **versions: list[int]) -> ModelStore:
    for model, numbers in versions.items():
        for number in numbers:
            (root / model / str(number)).mkdir(parents=True, exist_ok=True)
            (root / model / str(number) / "saved_model.pb").write_bytes(b"graph")
    return ModelStore(root)


class Pod:
    """A pod's TF Serving fed what the operator writes, on a fake clock."""

    def __init__(self, store: ModelStore, args: list[str], text: str) -> None:
        self.text = text
        self.now = 0.0
        self.process = Process(
            Options.from_args(args), lambda: self.text, store, DirectoryLoader(), 0.0
        )

    def run(self, seconds: float, step: float = 1.0) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += step
            self.process.advance(self.now)

    def states(self) -> dict[str, list[VersionStatus]]:
        return {
            name: [
                VersionStatus(int(e["version"]), e["state"], **_status(e))
                for e in self.process.version_status(name) or []
            ]
            for name in self.process.models
        }


def _status(entry: dict[str, Any]) -> dict[str, str]:
    return {
        "error_code": entry["status"]["error_code"],
        "error_message": entry["status"]["error_message"],
    }


RECOMMENDER = {
    "modelStorage": {"claimName": "models"},
    "models": [
        {
            "name": "ranker",
            "basePath": "/models/ranker",
            "size": "100Mi",
            "versionPolicy": {"specific": [47, 48]},
            "versionLabels": {"stable": 47, "canary": 48},
        },
        {"name": "embedder", "basePath": "/models/embedder", "size": "50Mi"},
    ],
}


def test_a_pod_starts_with_labels_in_its_first_config(tmp_path: Path) -> None:
    store = _store(tmp_path, ranker=[47, 48], embedder=[1])
    pod = Pod(store, *_rendered(parse_spec(RECOMMENDER)))
    pod.run(5)
    assert pod.process.exit_message is None
    assert pod.process.ports_open
    assert pod.process.labels["ranker"] == {"stable": 47, "canary": 48}


def test_a_new_model_with_labels_reaches_a_running_pod(tmp_path: Path) -> None:
    store = _store(tmp_path, ranker=[47, 48], embedder=[1], scorer=[3, 4])
    before = copy.deepcopy(RECOMMENDER)
    pod = Pod(store, *_rendered(parse_spec(before)))
    pod.run(5)
    after = copy.deepcopy(RECOMMENDER)
    after["models"].append(
        {
            "name": "scorer",
            "basePath": "/models/scorer",
            "size": "10Mi",
            "versionPolicy": {"specific": [3, 4]},
            "versionLabels": {"stable": 3},
        }
    )
    pod.text = _rendered(parse_spec(after))[1]
    pod.run(60)
    assert pod.process.reload_errors == []
    assert {v.version: v.state for v in pod.states()["scorer"]} == {3: AVAILABLE, 4: AVAILABLE}
    assert pod.process.labels["scorer"] == {"stable": 3}


def _promote_through(pod: Pod, spec: ModelServerSpec, plan: Plan, seconds: float) -> list[str]:
    """Run the operator's promotion steps against the pod until done (or the time
    is up), writing each step's models.config; returns the steps taken."""
    record: dict[str, Any] | None = None
    steps = []
    settings_ = promotion.Settings(plan.promotion_grace_seconds, plan.promotion_timeout_seconds)
    end = pod.now + seconds
    while pod.now < end:
        model = spec.models[0]
        live = parse_models_config(pod.text)[model.name]
        answered = {"pod": pod.states()} if pod.process.ports_open else {}
        step = promotion.step(
            model,
            live,
            promotion.Seen.of(model.name, answered, pods=1),
            record,
            now=pod.now,
            generation=2,
            settings=settings_,
        )
        record = step.record
        if record and (not steps or steps[-1] != record["step"]):
            steps.append(record["step"])
        pod.text = render_models_config(spec, {model.name: step.write})
        if record and record["step"] in (promotion.DONE, promotion.ROLLED_BACK):
            break
        pod.run(5)
    return steps


def test_a_promotion_never_has_a_reload_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, ranker=[47, 48])
    first = {
        "modelStorage": {"claimName": "models"},
        "models": [
            {
                "name": "ranker",
                "basePath": "/models/ranker",
                "size": "100Mi",
                "versionPolicy": {"specific": [47]},
                "versionLabels": {"stable": 47},
            }
        ],
    }
    pod = Pod(store, *_rendered(parse_spec(first)))
    pod.run(5)
    second = copy.deepcopy(first)
    second["models"][0]["versionPolicy"] = {"specific": [48]}
    second["models"][0]["versionLabels"] = {"stable": 48}
    spec = parse_spec(second)
    steps = _promote_through(pod, spec, make_plan(spec), seconds=600)
    assert steps == [promotion.LOADING, promotion.DRAINING, promotion.DONE]
    assert pod.process.reload_errors == []
    assert pod.process.labels["ranker"] == {"stable": 48}


@settings(max_examples=30, derandomize=True, deadline=None)
@given(
    size_mib=st.integers(min_value=10, max_value=8 * 1024),
    budget=st.one_of(st.none(), st.integers(min_value=60, max_value=7200)),
    uri=st.booleans(),
)
def test_a_broken_version_reports_its_error_before_the_promotion_times_out(
    tmp_path_factory: pytest.TempPathFactory, size_mib: int, budget: int | None, uri: bool
) -> None:
    base = "gs://b/ranker" if uri else "/models/ranker"
    raw = {
        "modelStorage": {"claimName": "models"},
        "models": [
            {
                "name": "ranker",
                "basePath": base,
                "size": f"{size_mib}Mi",
                "versionPolicy": {"specific": [1]},
                "versionLabels": {"stable": 1},
            }
        ],
        **({"probes": {"startupBudgetSeconds": budget}} if budget else {}),
    }
    root = tmp_path_factory.mktemp("store")
    local = root / ("gs/b/ranker" if uri else "ranker")
    (local / "1").mkdir(parents=True)
    (local / "1" / "saved_model.pb").write_bytes(b"graph")
    (local / "2").mkdir()  # broken: no graph
    pod = Pod(ModelStore(root), *_rendered(parse_spec(raw)))
    pod.run(5)
    assert pod.process.ports_open
    raw["models"][0]["versionPolicy"] = {"specific": [2]}
    raw["models"][0]["versionLabels"] = {"stable": 2}
    spec = parse_spec(raw)
    plan = make_plan(spec)
    assert plan.failure_report_seconds < plan.promotion_timeout_seconds
    started = pod.now
    steps = _promote_through(pod, spec, plan, seconds=plan.promotion_timeout_seconds + 60)
    assert steps[-1] == promotion.ROLLED_BACK
    # Rolled back for TF Serving's own error, not for the time-out.
    ended = {v.version: v for v in pod.states()["ranker"]}
    assert ended[2].state == END and "Could not find SavedModel" in ended[2].error_message
    assert pod.now - started <= plan.failure_report_seconds + 5
    assert {v.version: v.state for v in pod.states()["ranker"]}[1] == AVAILABLE


def test_rendered_models_config_parses_back_to_what_is_served() -> None:
    spec = parse_spec(RECOMMENDER)
    text = _rendered(spec)[1]
    assert parse_models_config(text)["ranker"] == Configured(
        (47, 48), (("canary", 48), ("stable", 47))
    )
