"""Real, tiny TensorFlow SavedModels for tests: what a training pipeline would
export into a model store, one numeric directory per version."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

# Signatures a test can ask for:
# - "regress": x float32[batch, 3] -> y float32[batch, 1] (y = x . w, w depends on the version)
# - "breaking": the same model whose input is int64 and renamed "features" (clients break)
# - "extra-output": "regress" plus an output "confidence" (a compatible change)
SIGNATURES = ("regress", "breaking", "extra-output")


class _Regressor(tf.Module):
    def __init__(self, version: int, signature: str) -> None:
        super().__init__()
        self.weights = tf.Variable([[1.0], [2.0], [float(version)]])
        self.signature = signature

    def _y(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.cast(x, tf.float32), self.weights)


def write_saved_model(directory: Path, version: int, *, signature: str = "regress") -> Path:
    """Export a model into `directory` (the version directory itself)."""
    if signature not in SIGNATURES:
        raise ValueError(f"unknown signature kind {signature!r}: one of {SIGNATURES}")
    module = _Regressor(version, signature)
    if signature == "breaking":

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int64, name="features")])
        def serve(features: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": module._y(features)}

    elif signature == "extra-output":

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
            y = module._y(x)
            return {"y": y, "confidence": tf.sigmoid(y)}

    else:

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": module._y(x)}

    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve})
    return directory


def corrupt(directory: Path) -> None:
    """Damage a SavedModel the way a half-finished upload does: a truncated graph."""
    graph = directory / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[:40])


def write_warmup(directory: Path, model: str, *, valid: bool = True) -> Path:
    """assets.extra/tf_serving_warmup_requests: PredictionLog records TF Serving
    replays at load time (an invalid one is not a TFRecord of PredictionLogs)."""
    target = directory / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not valid:
        target.write_bytes(b"not a TFRecord file")
        return target
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model, signature_name="serving_default")
    )
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0, 3.0]], dtype=tf.float32))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(str(target)) as writer:
        writer.write(log.SerializeToString())
    return target
