"""Shared fixtures: offline mode, and one export per tiny architecture for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from onnxforge.models.tiny import TINY_CONFIGS  # noqa: E402 - after the offline settings
from tests.passes.helpers import FUSE_RECIPE, run_recipe  # noqa: E402

TINY_ARCHITECTURES = tuple(TINY_CONFIGS)


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """export_tiny(ARCH) -> folder exported (and parity-checked) from tiny:ARCH, once per session."""
    from onnxforge.exporter.export import export_model

    root = tmp_path_factory.mktemp("exports")
    manifests: dict[str, dict] = {}

    def export(arch: str) -> Path:
        if arch not in manifests:
            manifests[arch] = export_model(f"tiny:{arch}", root / arch)
        return root / arch

    return export


@pytest.fixture(scope="session")
def fused_tiny(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """fused_tiny(ARCH) -> the fuse recipe's folder of tiny:ARCH."""
    root, done = tmp_path_factory.mktemp("fused"), set()

    def fused(arch: str) -> Path:
        if arch not in done:
            run_recipe(export_tiny(arch), root / arch, FUSE_RECIPE)
            done.add(arch)
        return root / arch

    return fused


@pytest.fixture(scope="session")
def default_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(folder, manifest) of the real default model, exported once for every slow test."""
    from onnxforge.exporter.export import export_model

    folder = tmp_path_factory.mktemp("cache") / "smollm2-135m"
    return folder, export_model("smollm2-135m", folder)
