"""Fixtures of the command-line tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def folder(export_tiny: Callable[[str], Path], tmp_path: Path) -> Path:
    """A private copy of the tiny llama export that a test may damage."""
    return Path(shutil.copytree(export_tiny("llama"), tmp_path / "model"))
