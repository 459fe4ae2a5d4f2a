"""The operator process stays small: it never imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_the_operator_never_imports_tensorflow() -> None:
    code = (
        "import sys, tfops.commands.run, tfops.handlers, tfops.cli\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tensorflow_serving', 'keras'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
