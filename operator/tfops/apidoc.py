"""docs/api.md, generated from the CRD's schema (itself generated from the spec
model), so the reference can never say something the apiserver does not."""

from __future__ import annotations

from typing import Any

from tfops.model import GROUP, KIND, VERSION

HEADER = f"""# `{KIND}` API reference (`{GROUP}/{VERSION}`)

Generated from the spec model (`operator/tfops/model.py`) by `make crds`; a test fails when
it is stale. `kubectl explain ms.spec.FIELD` shows the same descriptions. Rules that span
fields (CEL) are listed under the object they belong to; what CEL cannot express the operator
checks and reports in status (see user-guide.md).

| field | type | bounds and default | description |
| --- | --- | --- | --- |
"""


def _type(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "quantity"
    kind = schema.get("type", "object")
    if kind == "array":
        return f"[]{_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"map[string]{_type(schema['additionalProperties'])}"
    if schema.get("enum"):
        return " \\| ".join(f"`{value}`" for value in schema["enum"])
    return str(kind)


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("maxProperties", "keys ≤"),
    ):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    if "default" in schema:
        parts.append(f"default `{schema['default']}`")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(schema: dict[str, Any], path: str) -> list[str]:
    rows = [
        f"| `{path}` | {_type(schema)} | {_cell(_bounds(schema))} | "
        f"{_cell(schema.get('description', ''))} |"
    ]
    rows.extend(_rules(schema, path))
    items = schema.get("items") or {}
    if items.get("type") == "object" and "properties" in items:
        # A list of objects: its items' rules, then their fields, under path[].
        rows.extend(_rules(items, f"{path}[]"))
        rows.extend(_children(items, f"{path}[]"))
    elif "properties" in schema:
        rows.extend(_children(schema, path))
    return rows


def _rules(schema: dict[str, Any], path: str) -> list[str]:
    return [
        f"| `{path}` | rule | | {_cell(rule['message'])} |"
        for rule in schema.get("x-kubernetes-validations") or []
    ]


def _children(schema: dict[str, Any], path: str) -> list[str]:
    return [
        row
        for name, child in schema["properties"].items()
        for row in _rows(child, f"{path}.{name}")
    ]


def render_api_doc(crd: dict[str, Any]) -> str:
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return HEADER + "\n".join(_rows(root, "spec")) + "\n"
