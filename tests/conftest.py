import pathlib

import pytest

from graphexec import registry as regmod

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


@pytest.fixture
def models() -> pathlib.Path:
    return MODELS


@pytest.fixture(autouse=True)
def restore_registry():
    """Every test leaves the gate registry as it found it: gates a test registers in-process
    (register_gate) are forgotten and a registry it installs (reset_registry) is replaced by the
    one before. Autouse, so that no test can forget it; tests that register gates also name it."""
    saved = regmod.snapshot()
    yield
    regmod.restore(saved)
