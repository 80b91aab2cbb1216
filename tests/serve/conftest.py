"""Fused tiny folders for the serving tests, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.passes.helpers import run_recipe

FUSE = '[[passes]]\nname = "cleanup"\n\n[[passes]]\nname = "fuse"'


@pytest.fixture(scope="session")
def fused_tiny(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """fused_tiny(ARCH) -> the fuse recipe's folder of tiny:ARCH."""
    root, done = tmp_path_factory.mktemp("fused"), set()

    def fused(arch: str) -> Path:
        if arch not in done:
            run_recipe(export_tiny(arch), root / arch, FUSE)
            done.add(arch)
        return root / arch

    return fused
