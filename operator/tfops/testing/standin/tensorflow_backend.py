"""The stand-in's TensorFlow side: versions loaded as real SavedModels, so the
metadata and predict routes answer as TF Serving would. Imported only where a
test needs them (the benchmarks and the plain status routes do not)."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2


class TensorFlowLoader:
    """Loads each version directory with TensorFlow, in the background, like TF
    Serving's loader. A load is shared by every pod while the graph file is
    unchanged (a retry after the file was fixed loads anew)."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="standin-load")
        self._loads: dict[tuple[Path, float], concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> concurrent.futures.Future[Any]:
        graph = path / "saved_model.pb"
        key = (path, graph.stat().st_mtime if graph.exists() else 0.0)
        with self._lock:
            if key not in self._loads:
                self._loads[key] = self._pool.submit(tf.saved_model.load, str(path))
            return self._loads[key]


def metadata(name: str, version: int, path: Path) -> dict[str, Any]:
    """GET .../metadata: the SavedModel's signature defs, in TF Serving's JSON."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in saved.meta_graphs[0].signature_def.items():
        signatures.signature_def[key].CopyFrom(signature)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True)
        },
    }


def predict(loaded: Any, request: dict[str, Any]) -> dict[str, Any]:
    """POST ...:predict, row ("instances") or columnar ("inputs") format."""
    try:
        signature = loaded.signatures[request.get("signature_name") or "serving_default"]
        specs = signature.structured_input_signature[1]
        if "instances" in request:
            rows = request["instances"]
            if len(specs) == 1:
                (key,) = specs
                columns = {key: [r[key] if isinstance(r, dict) else r for r in rows]}
            else:
                columns = {key: [r[key] for r in rows] for key in specs}
        else:
            inputs = request["inputs"]
            (key,) = specs if not isinstance(inputs, dict) else (None,)
            columns = inputs if isinstance(inputs, dict) else {key: inputs}
        tensors = {
            key: tf.constant(np.asarray(value), dtype=specs[key].dtype)
            for key, value in columns.items()
        }
        outputs = {k: v.numpy().tolist() for k, v in signature(**tensors).items()}
    except tf.errors.OpError as error:
        raise ValueError(str(error)) from error
    if "instances" not in request:
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(count)]}
