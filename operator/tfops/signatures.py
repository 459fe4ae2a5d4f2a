"""Serving signatures and whether a new model version keeps its clients working. Pure.

Signatures come in the JSON form TF Serving's REST metadata endpoint answers
(`metadata.signature_def.signature_def`: SignatureDef messages with proto field
names); `tfops.savedmodel` reads a version directory into the same form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tensor:
    dtype: str  # e.g. DT_FLOAT
    shape: tuple[int, ...] | None  # -1 for any size; None for unknown rank

    def describe(self) -> str:
        dtype = self.dtype.removeprefix("DT_").lower()
        if self.shape is None:
            return f"{dtype}[?]"
        return f"{dtype}[{', '.join('?' if d < 0 else str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Signature:
    method: str
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]


def _tensor(info: dict[str, Any]) -> Tensor:
    shape = info.get("tensor_shape") or {}
    if shape.get("unknown_rank"):
        return Tensor(info.get("dtype", "DT_INVALID"), None)
    dims = tuple(int(d.get("size", -1)) for d in shape.get("dim") or [])
    return Tensor(info.get("dtype", "DT_INVALID"), dims)


def parse_signatures(signature_defs: dict[str, Any]) -> dict[str, Signature]:
    """From a SignatureDefMap's `signature_def` field, in JSON form. TF Serving's
    internal `__saved_model_init_op` entry is not a serving signature."""
    return {
        name: Signature(
            definition.get("method_name", ""),
            {k: _tensor(v) for k, v in (definition.get("inputs") or {}).items()},
            {k: _tensor(v) for k, v in (definition.get("outputs") or {}).items()},
        )
        for name, definition in sorted(signature_defs.items())
        if not name.startswith("__")
    }


def signatures_from_metadata(payload: dict[str, Any]) -> dict[str, Signature]:
    """From the body of GET /v1/models/M/versions/N/metadata."""
    return parse_signatures(payload["metadata"]["signature_def"]["signature_def"])


def _shape_fits(old: tuple[int, ...] | None, new: tuple[int, ...] | None) -> bool:
    """Whether every tensor that fitted `old` still fits `new`."""
    if new is None:
        return True
    if old is None or len(old) != len(new):
        return False
    return all(n < 0 or o == n for o, n in zip(old, new, strict=True))


@dataclass(frozen=True)
class Change:
    breaking: bool
    text: str


def compare(old: dict[str, Signature], new: dict[str, Signature]) -> list[Change]:
    """Every difference clients could notice, breaking ones first. Breaking: a
    signature, an input or an output gone; an input or output retyped or reshaped
    so old requests or readers no longer fit; a new input (TF signatures have no
    optional inputs). Not breaking: new signatures and new outputs, a dimension
    relaxed to any size."""
    changes: list[Change] = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(Change(True, f"signature {name!r} removed"))
            continue
        if name not in old:
            changes.append(Change(False, f"signature {name!r} added"))
            continue
        before, after = old[name], new[name]
        for key in sorted(set(before.inputs) | set(after.inputs)):
            was, now = before.inputs.get(key), after.inputs.get(key)
            where = f"{name}: input {key!r}"
            if now is None:
                changes.append(Change(True, f"{where} removed (was {was.describe()})"))  # type: ignore[union-attr]
            elif was is None:
                changes.append(
                    Change(True, f"{where} added ({now.describe()}): old requests lack it")
                )
            elif was.dtype != now.dtype or not _shape_fits(was.shape, now.shape):
                changes.append(
                    Change(True, f"{where} changed {was.describe()} -> {now.describe()}")
                )
            elif was != now:
                changes.append(
                    Change(False, f"{where} relaxed {was.describe()} -> {now.describe()}")
                )
        for key in sorted(set(before.outputs) | set(after.outputs)):
            was, now = before.outputs.get(key), after.outputs.get(key)
            where = f"{name}: output {key!r}"
            if now is None:
                changes.append(Change(True, f"{where} removed (was {was.describe()})"))  # type: ignore[union-attr]
            elif was is None:
                changes.append(Change(False, f"{where} added ({now.describe()})"))
            elif was.dtype != now.dtype or not _shape_fits(now.shape, was.shape):
                changes.append(
                    Change(True, f"{where} changed {was.describe()} -> {now.describe()}")
                )
            elif was != now:
                changes.append(
                    Change(False, f"{where} changed {was.describe()} -> {now.describe()}")
                )
        if before.method != after.method:
            changes.append(Change(True, f"{name}: method {before.method} -> {after.method}"))
    return sorted(changes, key=lambda c: not c.breaking)


def describe(signatures: dict[str, Signature]) -> list[str]:
    lines = []
    for name, signature in signatures.items():
        lines.append(f"{name} ({signature.method})")
        for key, tensor in signature.inputs.items():
            lines.append(f"  in   {key}: {tensor.describe()}")
        for key, tensor in signature.outputs.items():
            lines.append(f"  out  {key}: {tensor.describe()}")
    return lines


def to_json(signatures: dict[str, Signature]) -> dict[str, Any]:
    return {
        name: {
            "method": s.method,
            "inputs": {k: {"dtype": t.dtype, "shape": t.shape} for k, t in s.inputs.items()},
            "outputs": {k: {"dtype": t.dtype, "shape": t.shape} for k, t in s.outputs.items()},
        }
        for name, s in signatures.items()
    }
