"""Typed spec classes that are also the CRD schema.

A spec class is a frozen dataclass whose fields carry a description and OpenAPI
constraints (`spec_field`). From one definition we get both the structural
OpenAPI schema of the CRD (`openapi_schema`) and a parser from the JSON object
the apiserver stores to typed values (`parse`). Cross-field rules are written
once as `Rule`s: their CEL expression goes into the CRD, their Python predicate
re-checks the same thing in the operator and in unit tests, with one message.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NewType, TypeVar, get_args, get_origin

from tfops.quantity import QUANTITY_PATTERN, QuantityError, parse_quantity

T = TypeVar("T")

# A Kubernetes quantity such as "4Gi" or "500m" (stored as given).
Quantity = NewType("Quantity", str)
# A Kubernetes object kept as-is (e.g. a VolumeSource): its keys are checked by
# rules, its values by the apiserver when the owned object is applied.
RawObject = NewType("RawObject", dict)
# A Kubernetes object passed through as written (an env var's valueFrom): its own
# schema is the apiserver's, checked when the Deployment is applied.
FreeObject = NewType("FreeObject", dict)

QUANTITY_MAX_LENGTH = 32
# Integers without a maximum of their own stop here: larger ones lose precision in
# JSON clients, and past int64 the apiserver reads them as floats.
MAX_SAFE_INTEGER = 2**53 - 1


def matches(pattern: str, value: str) -> bool:
    """Whether `value` matches an OpenAPI `pattern` as the apiserver reads it (Go
    RE2, where `$` is the end of the text: Python's `$` would also accept a
    trailing newline)."""
    anchored = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    return re.search(anchored, value) is not None


def shown(value: Any) -> str:
    """A value as the user wrote it in YAML/JSON (true, not True; "a", not 'a')."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class SpecError:
    """One reason a spec is invalid: the field path and a message with the fix."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, enforced by the apiserver (CEL) and the operator (Python).

    `cel` is evaluated with `self` bound to the object the rule is attached to;
    `check` receives the parsed dataclass and returns True when the rule holds.
    `field` (relative, e.g. ".limits.memory") is where the error is reported.
    """

    cel: str
    check: Callable[[Any], bool]
    message: str
    field: str = ""


def spec_field(
    description: str,
    *,
    default: Any = dataclasses.MISSING,
    json_name: str | None = None,
    **openapi: Any,
) -> Any:
    """A dataclass field with its CRD description and OpenAPI constraints
    (minimum, maximum, exclusiveMinimum, pattern, maxLength, minItems, maxItems,
    enum, ...). Fields without a default are required."""
    metadata = {"description": description, "openapi": openapi, "json_name": json_name}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list | dict | tuple):
        frozen = default
        return dataclasses.field(default_factory=lambda: frozen, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def json_name(field: dataclasses.Field[Any]) -> str:
    explicit = field.metadata.get("json_name")
    if explicit:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Cached: resolving the annotations' strings was most of the time to parse a
    # spec, and every reconcile and guard tick parses one.
    return typing.get_type_hints(cls)


# -- schema generation ---------------------------------------------------------


_OPAQUE_SCHEMAS: dict[Any, dict[str, Any]] = {
    # A map of any values (not an opaque object), so CEL rules can see its keys.
    RawObject: {
        "type": "object",
        "additionalProperties": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    FreeObject: {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}


def openapi_schema(annotation: Any, description: str = "", **constraints: Any) -> dict[str, Any]:
    """The structural OpenAPI v3 schema for a type, as a CRD wants it."""
    annotation, _ = _strip_optional(annotation)
    schema: dict[str, Any]
    origin = get_origin(annotation)
    if annotation is Quantity:
        schema = {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": QUANTITY_MAX_LENGTH,
            "x-kubernetes-int-or-string": True,
        }
    elif annotation in _OPAQUE_SCHEMAS:
        schema = copy.deepcopy(_OPAQUE_SCHEMAS[annotation])
    elif annotation is str:
        schema = {"type": "string"}
    elif annotation is bool:
        schema = {"type": "boolean"}
    elif annotation is int:
        schema = {"type": "integer", "format": "int64"}
        constraints = {"maximum": MAX_SAFE_INTEGER, **constraints}
    elif annotation is float:
        schema = {"type": "number"}
        constraints = _with_float_bounds(constraints)
    elif origin is Literal:
        schema = {"type": "string", "enum": list(get_args(annotation))}
    elif origin is tuple:
        item, constraints = _item_constraints(get_args(annotation)[0], constraints)
        schema = {"type": "array", "items": item}
    elif origin in (dict, Mapping):
        key_pattern = constraints.pop("keyPattern", None)
        value, constraints = _item_constraints(get_args(annotation)[1], constraints)
        schema = {"type": "object", "additionalProperties": value}
        if key_pattern:
            constraints.setdefault("x-kubernetes-validations", []).insert(
                0,
                {
                    # A raw string: RE2's escapes are not CEL's.
                    "rule": f"self.all(k, k.matches(r'{key_pattern}'))",
                    "message": f"keys must match {key_pattern}",
                },
            )
    elif dataclasses.is_dataclass(annotation):
        schema = _object_schema(annotation)
    else:  # pragma: no cover - a programming error, caught by the CRD golden test
        raise TypeError(f"no schema for {annotation!r}")
    if description:
        schema["description"] = description
    for key, value in constraints.items():
        if key == "x-kubernetes-validations":
            schema.setdefault(key, []).extend(value)
        else:
            schema[key] = value
    return schema


def _with_float_bounds(constraints: dict[str, Any]) -> dict[str, Any]:
    """The apiserver compares an integer value with a bound truncated to an integer
    (0 passes minimum: 0.01): CEL rules hold the real, fractional bounds."""
    rules = [
        {"rule": f"self >= {constraints[k]}", "message": f"must be at least {constraints[k]}"}
        if k == "minimum"
        else {"rule": f"self <= {constraints[k]}", "message": f"must be at most {constraints[k]}"}
        for k in ("minimum", "maximum")
        if k in constraints and constraints[k] != int(constraints[k])
    ]
    if not rules:
        return constraints
    existing = list(constraints.get("x-kubernetes-validations", []))
    return {**constraints, "x-kubernetes-validations": rules + existing}


def _item_constraints(
    item_type: Any, constraints: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    item_keys = {k: v for k, v in constraints.items() if k.startswith("item_")}
    rest = {k: v for k, v in constraints.items() if not k.startswith("item_")}
    return openapi_schema(item_type, **{k[5:]: v for k, v in item_keys.items()}), rest


def _object_schema(cls: Any) -> dict[str, Any]:
    hints = _hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        name = json_name(field)
        constraints = dict(field.metadata.get("openapi", {}))
        properties[name] = openapi_schema(
            hints[field.name], field.metadata.get("description", ""), **constraints
        )
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    rules: list[Rule] = list(getattr(cls, "RULES", ()))
    if rules:
        schema["x-kubernetes-validations"] = [
            {
                "rule": rule.cel,
                "message": rule.message,
                **({"fieldPath": rule.field} if rule.field else {}),
            }
            for rule in rules
        ]
    return schema


# -- parsing -------------------------------------------------------------------


class SpecInvalid(ValueError):
    """The spec failed parsing or validation; `errors` names every field."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("; ".join(map(str, errors)))


def parse(cls: type[T], data: Any, path: str = "spec") -> T:
    """Parse JSON data into `cls`, checking types, constraints and rules.

    Raises SpecInvalid listing every error found (not just the first). A null is
    read as an absent field, as the apiserver does when it stores an object.
    """
    errors: list[SpecError] = []
    value = _parse_value(cls, data, path, {}, errors)
    if errors:
        raise SpecInvalid(errors)
    return typing.cast(T, value)


def _parse_value(
    annotation: Any, data: Any, path: str, constraints: Mapping[str, Any], errors: list[SpecError]
) -> Any:
    annotation, _optional = _strip_optional(annotation)
    if data is None:
        errors.append(SpecError(path, "is required"))
        return None
    origin = get_origin(annotation)
    if annotation is Quantity:
        return _parse_quantity(data, path, constraints, errors)
    if annotation in (RawObject, FreeObject):
        return _parse_opaque(annotation, data, path, constraints, errors)
    if annotation in (str, bool, int, float) or origin is Literal:
        return _parse_scalar(annotation, data, path, constraints, errors)
    if origin is tuple:
        return _parse_list(get_args(annotation)[0], data, path, constraints, errors)
    if origin in (dict, Mapping):
        return _parse_map(get_args(annotation)[1], data, path, constraints, errors)
    if dataclasses.is_dataclass(annotation):
        return _parse_object(annotation, data, path, errors)
    raise TypeError(f"cannot parse {annotation!r}")  # pragma: no cover


def _parse_opaque(
    annotation: Any, data: Any, path: str, constraints: Mapping[str, Any], errors: list[SpecError]
) -> Any:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        errors.append(SpecError(path, f"must be an object, not {shown(data)}"))
        return None
    if "maxProperties" in constraints and len(data) > constraints["maxProperties"]:
        errors.append(SpecError(path, f"takes at most {constraints['maxProperties']} entries"))
        return None
    if "minProperties" in constraints and len(data) < constraints["minProperties"]:
        errors.append(SpecError(path, f"needs at least {constraints['minProperties']} entry"))
        return None
    return annotation(data)


def _parse_quantity(
    data: Any, path: str, constraints: Mapping[str, Any], errors: list[SpecError]
) -> Quantity | None:
    if isinstance(data, bool) or not isinstance(data, int | str):
        errors.append(SpecError(path, f"{shown(data)} is not a quantity (e.g. 4Gi, 512Mi, 500m)"))
        return None
    if isinstance(data, str) and len(data) > QUANTITY_MAX_LENGTH:
        errors.append(SpecError(path, f"must be at most {QUANTITY_MAX_LENGTH} characters"))
        return None
    if isinstance(data, str) and not matches(QUANTITY_PATTERN, data):
        errors.append(
            SpecError(
                path,
                f"{shown(data)} is not a quantity: a number with an optional suffix "
                "(Ki, Mi, Gi, Ti, m, k, M, G, or an exponent such as e3), e.g. 4Gi or 500m",
            )
        )
        return None
    try:
        parse_quantity(data)
    except QuantityError as error:
        errors.append(SpecError(path, str(error)))
        return None
    return Quantity(str(data))


def _parse_map(
    value_type: Any, data: Any, path: str, constraints: Mapping[str, Any], errors: list[SpecError]
) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        errors.append(SpecError(path, f"must be an object (a map), not {shown(data)}"))
        return None
    if "maxProperties" in constraints and len(data) > constraints["maxProperties"]:
        errors.append(SpecError(path, f"takes at most {constraints['maxProperties']} entries"))
    key_pattern = constraints.get("keyPattern")
    item = {k[5:]: v for k, v in constraints.items() if k.startswith("item_")}
    result = {}
    for key, item_data in data.items():
        if item_data is None:
            continue  # the apiserver drops a null entry
        if not isinstance(key, str):
            errors.append(
                SpecError(path, f"keys must be strings ({shown(key)} is not; quote it in YAML)")
            )
            continue
        if key_pattern and not matches(key_pattern, key):
            errors.append(SpecError(path, f"keys must match {key_pattern} ({shown(key)} does not)"))
        result[key] = _parse_value(value_type, item_data, f"{path}.{key}", item, errors)
    return result


def _parse_scalar(
    annotation: Any, data: Any, path: str, constraints: Mapping[str, Any], errors: list[SpecError]
) -> Any:
    if get_origin(annotation) is Literal:
        allowed = get_args(annotation)
        if not isinstance(data, str) or data not in allowed:
            errors.append(SpecError(path, f"{shown(data)} is not one of {', '.join(allowed)}"))
            return None
        return data
    if annotation is int:
        constraints = {"maximum": MAX_SAFE_INTEGER, **constraints}
        # JSON has one number type: the apiserver takes 1.0 for an integer.
        if isinstance(data, float) and data.is_integer():
            data = int(data)
    ok = {
        str: isinstance(data, str),
        bool: isinstance(data, bool),
        int: isinstance(data, int) and not isinstance(data, bool),
        float: isinstance(data, int | float) and not isinstance(data, bool),
    }[annotation]
    if not ok:
        kind = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
        errors.append(SpecError(path, f"must be {kind[annotation]}, not {shown(data)}"))
        return None
    if annotation is float:
        if isinstance(data, float) and not math.isfinite(data):
            errors.append(SpecError(path, f"must be a finite number, not {data}"))
            return None
        value: Any = float(data)
    else:
        value = data
    _check_constraints(value, path, constraints, errors)
    return value


def _check_constraints(
    value: Any, path: str, c: Mapping[str, Any], errors: list[SpecError]
) -> None:
    if "minimum" in c:
        if c.get("exclusiveMinimum") and not value > c["minimum"]:
            errors.append(SpecError(path, f"must be greater than {c['minimum']}, not {value}"))
        elif not c.get("exclusiveMinimum") and value < c["minimum"]:
            errors.append(SpecError(path, f"must be at least {c['minimum']}, not {value}"))
    if "maximum" in c and value > c["maximum"]:
        errors.append(SpecError(path, f"must be at most {c['maximum']}, not {value}"))
    if "pattern" in c and not matches(c["pattern"], value):
        errors.append(SpecError(path, f"{shown(value)} must match {c['pattern']}"))
    if "maxLength" in c and len(value) > c["maxLength"]:
        errors.append(SpecError(path, f"must be at most {c['maxLength']} characters"))
    if "minLength" in c and len(value) < c["minLength"]:
        errors.append(SpecError(path, f"must be at least {c['minLength']} characters"))


def _parse_list(
    item_type: Any, data: Any, path: str, constraints: Mapping[str, Any], errors: list[SpecError]
) -> Any:
    if not isinstance(data, list):
        errors.append(SpecError(path, f"must be a list, not {shown(data)}"))
        return None
    if "minItems" in constraints and len(data) < constraints["minItems"]:
        errors.append(SpecError(path, f"needs at least {constraints['minItems']} item(s)"))
    if "maxItems" in constraints and len(data) > constraints["maxItems"]:
        errors.append(SpecError(path, f"takes at most {constraints['maxItems']} items"))
    item = {k[5:]: v for k, v in constraints.items() if k.startswith("item_")}
    values = tuple(
        _parse_value(item_type, entry, f"{path}[{index}]", item, errors)
        for index, entry in enumerate(data)
    )
    if constraints.get("x-kubernetes-list-type") == "set":
        keys = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(keys)) != len(keys):
            errors.append(SpecError(path, "must not repeat a value"))
    return values


def _parse_object(cls: Any, data: Any, path: str, errors: list[SpecError]) -> Any:
    if not isinstance(data, dict):
        errors.append(SpecError(path, f"must be an object, not {shown(data)}"))
        return None
    hints = _hints(cls)
    fields = {json_name(f): f for f in dataclasses.fields(cls)}
    for unknown in sorted(set(data) - set(fields), key=str):
        errors.append(SpecError(f"{path}.{unknown}", f"unknown field; known: {', '.join(fields)}"))
    before = len(errors)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{path}.{name}"
        if data.get(name) is None:  # absent, or null (which the apiserver drops)
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                errors.append(SpecError(sub, "is required"))
            continue
        values[field.name] = _parse_value(
            hints[field.name], data[name], sub, field.metadata.get("openapi", {}), errors
        )
    if len(errors) > before:
        return None
    instance = cls(**values)
    for rule in getattr(cls, "RULES", ()):
        if not rule.check(instance):
            errors.append(SpecError(f"{path}{rule.field}", rule.message))
    return instance


def to_json(value: Any) -> Any:
    """A parsed value as the JSON it came from (JSON names, no unset fields): what a
    renderer passes on to Kubernetes unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            json_name(field): to_json(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if getattr(value, field.name) is not None
        }
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value
