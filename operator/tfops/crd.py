"""The ModelServer CustomResourceDefinition, generated from tfops.model.

`tfops crd` prints it; `make crds` writes crds/; a test fails when the checked-in
file differs from what this generates.
"""

from __future__ import annotations

from typing import Any

import yaml

from tfops.model import GROUP, KIND, NAME_RULE, PLURAL, VERSION, ModelServerSpec
from tfops.schema import openapi_schema
from tfops.status_model import status_schema

CRD_NAME = f"{PLURAL}.{GROUP}"


def render_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(
        ModelServerSpec, "What the TF Serving fleet serves and how it runs."
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "tfops"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": KIND.lower(),
                "kind": KIND,
                "listKind": f"{KIND}List",
                "shortNames": ["ms"],
                "categories": ["tfops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {
                            "name": "Replicas",
                            "type": "string",
                            "jsonPath": ".status.replicasSummary",
                        },
                        {"name": "Models", "type": "string", "jsonPath": ".status.modelsSummary"},
                        {
                            "name": "Memory",
                            "type": "string",
                            "jsonPath": ".status.effective.memoryLimit",
                        },
                        {
                            "name": "Leak-Restarts",
                            "type": "integer",
                            "jsonPath": ".status.memoryGuard.restartsTotal",
                        },
                        {
                            "name": "OOM-Kills",
                            "type": "integer",
                            "priority": 1,
                            "jsonPath": ".status.oomKills.total",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A fleet of TensorFlow Serving pods serving one or more "
                            "models, kept converged by tfops.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {"rule": NAME_RULE.cel, "message": NAME_RULE.message}
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: Any) -> str:
    return str(yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False, width=100))


def render_chart_crd() -> str:
    """The CRD as a Helm template (charts/tfops/templates/crd.yaml): behind
    crds.enabled, and kept on uninstall with crds.keep. Same source as crds/."""
    crd = render_crd()
    # The chart's metadata replaces the CRD's own (one `labels:` key: YAML keeps the
    # last of two, and strict parsers refuse the file).
    own_labels = crd["metadata"].pop("labels")
    text = to_yaml(crd)
    if "{{" in text:
        raise ValueError("the CRD text holds '{{', which Helm would try to render")
    head, rest = text.split("metadata:\n", 1)
    keep = (
        "metadata:\n"
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
        "  labels:\n"
        '    {{- include "tfops.labels" . | nindent 4 }}\n'
        + "".join(f"    {key}: {value}\n" for key, value in own_labels.items())
    )
    return (
        "{{- if .Values.crds.enabled }}\n"
        "# Generated from operator/tfops/model.py by `make crds`: do not edit.\n"
        f"{head}{keep}{rest}"
        "{{- end }}\n"
    )
