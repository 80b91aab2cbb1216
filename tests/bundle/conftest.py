"""Tiny folders to bundle: the plain export, fused, and int4, of tiny llama."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from tests.passes.helpers import SMALL_CALIBRATION


@pytest.fixture(scope="session")
def tiny_folders(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'fp32': export, 'fused': the fuse recipe, 'int4': the int4 recipe} of tiny llama."""
    root = tmp_path_factory.mktemp("bundle-sources")
    folders = {"fp32": export_tiny("llama")}
    for name, recipe in (("fused", "fuse"), ("int4", "int4")):
        compress(folders["fp32"], root / name, load_recipe(recipe), SMALL_CALIBRATION, force=True)
        folders[name] = root / name
    return folders
