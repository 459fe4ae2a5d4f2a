"""Random changes to a valid ModelServer spec, for the differential test: the
operator's parser and the real apiserver must accept and refuse the same specs."""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from hypothesis import strategies as st

from tests.bad_specs import RICH_SPEC, VALID_SPEC
from tfops.crd import render_crd

DELETE = object()

# Values that have found disagreements before, or sit on a boundary of some field.
VALUES: list[Any] = [
    DELETE, None, 0, 1, -1, 2, 7, 10, 64, 128, 300, 2**31, 2**53, 2**53 - 1, 2**62,
    0.0, 0.5, 1.0, 1.5, 0.005, 0.01, 0.3, -0.5, 0.95, 1e300,
    True, False,
    "", "a", "ok_name", "A b", "x\n", "-1", "0", "1", "512m", "512Mi", "256Mi", "1e3",
    "100Ei", "4Gi", "1e40", "+1Gi", ".5Gi", "1.5", "5000m", "/models/x", "/models/../x",
    "/models/..", "/models/a/..", "gs://b/x", "s3://b/x", "http://x", "tensorflow",
    "jemalloc", "s3", "Restart", "Alert", "glibc", "2.19.1", "2.4.0", "models",
    "tensorflow/serving:2.20.0", "a b:1",
    [], [1], [0, 0], [64], [16, 64], [8, 16, 32, 64], [""], ["s3"], ["jemalloc", "s3"],
    [47], [47, 48], [{"name": "m", "basePath": "gs://b/m"}],
    {}, {"a": 1}, {"stable": 47}, {"stable": -1}, {"nfs": {"server": "a", "path": "/b"}},
    {"name": "x"}, {"name": "x", "nfs": {}}, {"emptyDir": {}}, {"bogus": {}},
    {"nfs": {}, "csi": {}}, {"count": 1}, {"latest": 2}, {"specific": [47]},
]  # fmt: skip


def _paths(
    schema: dict[str, Any], prefix: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], str]]:
    """Every field path the schema declares, with its type."""
    found: list[tuple[tuple[Any, ...], str]] = []
    children: list[tuple[Any, dict[str, Any]]] = []
    if "properties" in schema:
        children = list(schema["properties"].items())
    elif schema.get("type") == "array":
        children = [(0, schema["items"])]
    elif isinstance(schema.get("additionalProperties"), dict):
        children = [("stable", schema["additionalProperties"])]
    for step, sub in children:
        found.append(((*prefix, step), str(sub.get("type", "any"))))
        found += _paths(sub, (*prefix, step))
    return found


SPEC_SCHEMA = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
PATHS = _paths(SPEC_SCHEMA)


def mutate(spec: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """`spec` with the field at `path` set to `value` (or deleted), creating the
    objects and lists on the way; unchanged when an earlier change made the path
    impossible (a list where an object was)."""
    changed = copy.deepcopy(spec)
    node: Any = changed
    for step, following in itertools.pairwise(path):
        if not _fits(node, step):
            return changed
        child = _get(node, step)
        if not isinstance(child, dict | list) or not _fits(child, following):
            child = [] if isinstance(following, int) else {}
            _put(node, step, child)
        node = child
    last = path[-1]
    if not _fits(node, last):
        return changed
    if value is DELETE:
        if isinstance(node, dict):
            node.pop(last, None)
        elif last < len(node):
            node.pop(last)
    else:
        _put(node, last, value)
    return changed


def _fits(node: Any, step: Any) -> bool:
    return (isinstance(node, dict) and isinstance(step, str)) or (
        isinstance(node, list) and isinstance(step, int)
    )


def _get(node: Any, step: Any) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    return node[step] if step < len(node) else None


def _put(node: Any, step: Any, value: Any) -> None:
    if isinstance(node, dict) or step < len(node):
        node[step] = value
    else:
        node.append(value)


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = copy.deepcopy(draw(st.sampled_from([VALID_SPEC, RICH_SPEC])))
    for _ in range(draw(st.integers(1, 2))):
        value = draw(st.sampled_from(VALUES))
        path, kind = draw(st.sampled_from(PATHS))
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            # The apiserver stores 1.0 as the integer 1 (the parser reads it so),
            # but its CEL rules see the float and may refuse it: its own quirk.
            value = int(value)
        spec = mutate(spec, path, value if value is DELETE else copy.deepcopy(value))
    return spec


def normalise(path: str) -> str:
    """The apiserver's field path as the parser writes it: volume[name] -> volume.name."""
    return re.sub(r"\[([A-Za-z_][^\]]*)\]", r".\1", path)


def api_fields(body: dict[str, Any]) -> list[str]:
    """The field paths an apiserver refusal names (its causes, or the fields of a
    strict decoding error), as the parser writes them."""
    fields = [
        normalise(cause["field"])
        for cause in (body.get("details") or {}).get("causes") or []
        if cause.get("field")
    ]
    fields += [
        normalise(f) for f in re.findall(r'unknown field "([^"]+)"', body.get("message", ""))
    ]
    return fields


def related(a: str, b: str) -> bool:
    """One path is the other or lies under it."""
    return a == b or any(a.startswith(b + sep) or b.startswith(a + sep) for sep in ".[")
