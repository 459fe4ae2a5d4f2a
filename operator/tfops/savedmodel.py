"""Reading SavedModel version directories: for `tfops inspect` and the promotion
gate. Needs TensorFlow (the `tfops[tf]` extra), imported only when called; the
operator never imports this module."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfops.signatures import Signature, parse_signatures

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
INSTALL_HINT = (
    "this command needs TensorFlow: pip install 'tfops[tf]' "
    "(TensorFlow and tensorflow-serving-api; the operator itself never needs them)"
)


class NeedsTensorFlow(RuntimeError):
    pass


class NotASavedModel(ValueError):
    pass


def _tensorflow_module(name: str) -> Any:
    # TensorFlow's C++ start-up chatter is noise in a pipeline's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise NeedsTensorFlow(INSTALL_HINT) from error


def read_signatures(directory: Path) -> dict[str, Signature]:
    """The serving signatures in `directory`/saved_model.pb."""
    graph = directory / "saved_model.pb"
    if not graph.is_file():
        raise NotASavedModel(
            f"{directory} is not a SavedModel version directory (no saved_model.pb); point at "
            "the numbered version directory, e.g. /models/ranker/48"
        )
    saved_model_pb2 = _tensorflow_module("tensorflow.core.protobuf.saved_model_pb2")
    json_format = importlib.import_module("google.protobuf.json_format")
    message = importlib.import_module("google.protobuf.message")
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(graph.read_bytes())
    except message.DecodeError as error:
        raise NotASavedModel(f"{graph} does not parse as a SavedModel: {error}") from error
    if not saved.meta_graphs:
        raise NotASavedModel(f"{graph} holds no MetaGraph")
    defs = {
        name: json_format.MessageToDict(definition, preserving_proto_field_name=True)
        for name, definition in saved.meta_graphs[0].signature_def.items()
    }
    return parse_signatures(defs)


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Warmup:
    present: bool
    valid: bool
    records: int
    error: str = ""


def check_warmup(directory: Path) -> Warmup:
    """assets.extra/tf_serving_warmup_requests must be a TFRecord file of
    PredictionLog messages (TF Serving replays them at load and fails the load
    otherwise)."""
    path = directory / WARMUP_FILE
    if not path.is_file():
        return Warmup(False, False, 0)
    tf = _tensorflow_module("tensorflow")
    prediction_log_pb2 = _tensorflow_module("tensorflow_serving.apis.prediction_log_pb2")
    records = 0
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            log = prediction_log_pb2.PredictionLog()
            log.ParseFromString(record.numpy())
            if log.WhichOneof("log_type") is None:
                return Warmup(True, False, records, f"record {records + 1} is an empty log")
            records += 1
    except Exception as error:  # TF raises many kinds; each means invalid
        return Warmup(True, False, records, str(error).splitlines()[0])
    if records == 0:
        return Warmup(True, False, 0, "the file holds no records")
    return Warmup(True, True, records)


def measure_resident_bytes(directory: Path, timeout: float = 600) -> int:
    """Resident memory a load of the SavedModel adds, measured in a child process
    (TensorFlow's memory never returns to the caller's process)."""
    result = subprocess.run(
        [sys.executable, "-m", "tfops.savedmodel", str(directory)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise NotASavedModel(
            f"TensorFlow could not load {directory}: {lines[-1] if lines else 'no output'}"
        )
    return int(json.loads(result.stdout.strip().splitlines()[-1])["resident_bytes"])


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _measure_in_this_process(directory: str) -> None:
    tf = _tensorflow_module("tensorflow")
    tf.constant(0)  # initialise the runtime before the baseline
    before = _rss_bytes()
    loaded = tf.saved_model.load(directory)
    after = _rss_bytes()
    del loaded
    print(json.dumps({"resident_bytes": max(0, after - before)}))


if __name__ == "__main__":
    _measure_in_this_process(sys.argv[1])
