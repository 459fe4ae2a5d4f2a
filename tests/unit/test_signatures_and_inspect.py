"""The validation gate's signature comparison and `tfops inspect`, on real
SavedModels exported with TensorFlow (tfops.testing.standin.savedmodels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfops.savedmodel import NotASavedModel, read_signatures
from tfops.signatures import Signature, Tensor, compare
from tfops.testing.standin import savedmodels


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store") / "ranker"
    savedmodels.write_saved_model(root / "1", 1)
    savedmodels.write_warmup(root / "1", "ranker")
    savedmodels.write_saved_model(root / "2", 2, signature="breaking")
    savedmodels.write_saved_model(root / "3", 3, signature="extra-output")
    savedmodels.write_saved_model(root / "4", 4)
    savedmodels.write_warmup(root / "4", "ranker", valid=False)
    savedmodels.corrupt(savedmodels.write_saved_model(root / "5", 5))
    return root


def _texts(old: Path, new: Path) -> list[tuple[bool, str]]:
    return [(c.breaking, c.text) for c in compare(read_signatures(old), read_signatures(new))]


def test_the_same_signature_has_no_changes(store: Path) -> None:
    assert _texts(store / "1", store / "4") == []


def test_a_renamed_and_retyped_input_is_breaking(store: Path) -> None:
    assert _texts(store / "1", store / "2") == [
        (True, "serving_default: input 'features' added (int64[?, 3]): old requests lack it"),
        (True, "serving_default: input 'x' removed (was float[?, 3])"),
    ]


def test_a_new_output_is_not_breaking(store: Path) -> None:
    assert _texts(store / "1", store / "3") == [
        (False, "serving_default: output 'confidence' added (float[?, 1])")
    ]


def test_shape_changes_break_only_when_old_requests_or_readers_no_longer_fit() -> None:
    def sig(inputs: dict[str, Tensor], outputs: dict[str, Tensor]) -> dict[str, Signature]:
        return {"serving_default": Signature("tensorflow/serving/predict", inputs, outputs)}

    fixed = Tensor("DT_FLOAT", (-1, 3))
    relaxed = Tensor("DT_FLOAT", (-1, -1))
    wider = Tensor("DT_FLOAT", (-1, 4))
    out = {"y": Tensor("DT_FLOAT", (-1, 1))}
    assert [c.breaking for c in compare(sig({"x": fixed}, out), sig({"x": relaxed}, out))] == [
        False
    ]
    assert [c.breaking for c in compare(sig({"x": fixed}, out), sig({"x": wider}, out))] == [True]
    removed = compare(sig({"x": fixed}, out), {})
    assert [(c.breaking, c.text) for c in removed] == [
        (True, "signature 'serving_default' removed")
    ]


def test_a_directory_that_is_not_a_saved_model_is_named_with_the_fix(store: Path) -> None:
    with pytest.raises(NotASavedModel, match="point at the numbered version directory"):
        read_signatures(store)
    with pytest.raises(NotASavedModel, match="does not parse as a SavedModel"):
        read_signatures(store / "5")


def _inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfops", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_inspect_reports_signatures_size_memory_and_warmup_as_json(store: Path) -> None:
    result = _inspect(str(store / "1"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["signatures"]["serving_default"]["inputs"] == {
        "x": {"dtype": "DT_FLOAT", "shape": [-1, 3]}
    }
    assert report["warmup"] == {"present": True, "valid": True, "records": 1}
    assert 10_000 < report["diskBytes"] < 1_000_000
    # Measured in a child process: a tiny model adds little, but something.
    assert 0 < report["residentBytes"] < 200 * 2**20
    assert report["suggested"]["memoryLimit"].endswith("Mi")


def test_inspect_prints_a_table_and_flags_an_invalid_warmup_file(store: Path) -> None:
    result = _inspect(str(store / "4"), "--no-load")
    assert result.returncode == 1, result.stdout
    assert "INVALID" in result.stdout and "TF Serving fails the load" in result.stdout
    assert "in   x: float[?, 3]" in result.stdout
    assert "resident after load  not measured" in result.stdout
    assert "warm-up file" in result.stderr


def test_inspect_names_a_bad_path_and_the_fix(store: Path) -> None:
    result = _inspect(str(store))
    assert result.returncode == 1
    assert "point at the numbered version directory" in result.stderr


def test_without_tensorflow_inspect_says_how_to_install_it_and_promote_still_runs(
    store: Path, tmp_path: Path
) -> None:
    # A `tensorflow` that cannot be imported, ahead of the real one on the path.
    blocker = tmp_path / "tensorflow"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def tfops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tfops", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    inspected = tfops("inspect", str(store / "1"))
    assert inspected.returncode == 3
    assert "pip install 'tfops[tf]'" in inspected.stderr
    assert tfops("promote", "--help").returncode == 0
    assert tfops("guard", "replay", "--help").returncode == 0
