"""Everything generated from a single source, written (`make crds`) or checked
(`--check`, which the tests run): the CRD and its copy in the Helm chart, the
chart's copy of the alert rules, the Argo CD ConfigMap patch around health.lua, and
the API reference docs/api.md, and the chart's RBAC rules for the owned kinds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from tfops.apidoc import render_api_doc
from tfops.crd import render_chart_crd, render_crd, to_yaml
from tfops.owned import OWNED_KINDS

REPO = Path(__file__).resolve().parents[1]


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the Lua stays readable."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def _argocd_patch() -> str:
    lua = (REPO / "deploy" / "argocd" / "health.lua").read_text()
    patch = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/part-of": "argocd"},
        },
        "data": {"resource.customizations.health.serving.tfops.dev_ModelServer": lua},
    }
    return (
        "# Merge into Argo CD's argocd-cm: kubectl patch configmap argocd-cm -n argocd "
        "--patch-file deploy/argocd/argocd-cm-patch.yaml\n"
        "# Generated from health.lua by `make crds`; tests fail on drift.\n"
        + yaml.dump(patch, Dumper=_LiteralDumper, sort_keys=False)
    )


def _owned_rules_template() -> str:
    """The chart's RBAC rules for the owned kinds, from tfops.owned."""
    lines = [
        "{{/* Generated from operator/tfops/owned.py by `make crds`; tests fail on drift. */}}",
        '{{- define "tfops.ownedRules" -}}',
    ]
    for owned in OWNED_KINDS:
        verbs = ", ".join(f'"{verb}"' for verb in owned.verbs)
        lines += [
            f'- apiGroups: ["{owned.group}"]',
            f'  resources: ["{owned.plural}"]',
            f"  verbs: [{verbs}]",
        ]
    return "\n".join([*lines, "{{- end -}}", ""])


def outputs() -> dict[Path, str]:
    return {
        REPO / "crds" / "modelservers.serving.tfops.dev.yaml": to_yaml(render_crd()),
        REPO / "charts" / "tfops" / "templates" / "crd.yaml": render_chart_crd(),
        REPO / "charts" / "tfops" / "files" / "alerts.yaml": (
            REPO / "monitoring" / "alerts.yaml"
        ).read_text(),
        REPO / "deploy" / "argocd" / "argocd-cm-patch.yaml": _argocd_patch(),
        REPO / "docs" / "api.md": render_api_doc(render_crd()),
        REPO / "charts" / "tfops" / "templates" / "_owned.tpl": _owned_rules_template(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail on drift, write nothing")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path.relative_to(REPO))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(
            "generated files are stale (run `make crds` and commit): " + ", ".join(map(str, stale)),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
