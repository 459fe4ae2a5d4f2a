"""Shared test settings. Integration fixtures live in tests/integration/conftest.py."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/ from the current renderers (review the diff like code)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def tools() -> Path:
    """helm and promtool, built from Go modules on first use (hack/build-tools.sh,
    cached under ~/.cache/tfops like the control plane)."""
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "build-tools.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return Path(built.stdout.strip().splitlines()[-1])
