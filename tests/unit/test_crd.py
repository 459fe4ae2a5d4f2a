"""The checked-in CRD is what the code generates, and documents every field."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from tests.conftest import REPO
from tfops.crd import render_crd, to_yaml
from tfops.status_model import OWNED_KEYS

CRD_FILE = REPO / "crds" / "modelservers.serving.tfops.dev.yaml"


def test_checked_in_crd_matches_the_generated_one() -> None:
    assert CRD_FILE.read_text() == to_yaml(render_crd()), (
        "crds/ is out of date: run `make crds` and commit the result"
    )


def test_tfops_crd_prints_the_same_crd() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "tfops", "crd"], capture_output=True, text=True, check=True
    ).stdout
    assert yaml.safe_load(printed) == render_crd()


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, child in (schema.get("properties") or {}).items():
        where = f"{path}.{name}"
        if not child.get("description"):
            missing.append(where)
        missing += _walk(child, where)
        if "items" in child:
            missing += _walk(child["items"], f"{where}[]")
    return missing


def test_every_spec_field_has_a_description_for_kubectl_explain() -> None:
    spec = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert _walk(spec, "spec") == []


def test_every_cel_rule_carries_a_message() -> None:
    text = to_yaml(render_crd())
    crd = yaml.safe_load(text)

    def rules(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = list(node.get("x-kubernetes-validations", []))
            return found + [r for value in node.values() for r in rules(value)]
        if isinstance(node, list):
            return [r for value in node for r in rules(value)]
        return []

    every = rules(crd)
    assert len(every) >= 15
    assert all(rule.get("message") for rule in every)


def test_every_status_field_has_a_description_for_kubectl_explain() -> None:
    root = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert _walk(root["status"], "status") == []


def test_the_status_model_owns_every_key_compute_status_writes() -> None:
    from tests.unit.test_status import full_status

    assert set(full_status()) <= set(OWNED_KEYS)
