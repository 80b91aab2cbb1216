"""Structural passes on the architectures beyond llama/mistral/qwen2: the table says which cuts each takes.

A listed cut runs on the tiny model, removes parameters (sparsify: non-zeros) and keeps most of
the top-1 predictions on the sanity text; an unlisted one is refused in one line naming the
architectures that take it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge.errors import BadInput
from onnxforge.models.architectures import ARCHITECTURES, STRUCTURAL_PASSES
from tests.passes.helpers import run_recipe

from ...conftest import TINY_ARCHITECTURES

CUTS = {
    "prune-ffn": 'name = "prune-ffn"\nratio = 0.25',
    "prune-heads": 'name = "prune-heads"\nratio = 0.5',
    "drop-layers": 'name = "drop-layers"\ncount = 1',
    "sparsify": 'name = "sparsify"\nratio = 0.5',
    "lowrank": 'name = "lowrank"\nkeep = 0.5',
}
COVERED_ELSEWHERE = ("llama", "mistral", "qwen2")  # their own tests under tests/passes/prune/
LISTED = [(arch, cut) for arch in TINY_ARCHITECTURES if arch not in COVERED_ELSEWHERE
          for cut in ARCHITECTURES[arch].cut_by]
UNLISTED = [(arch, cut) for arch in TINY_ARCHITECTURES for cut in STRUCTURAL_PASSES
            if cut not in ARCHITECTURES[arch].cut_by]


@pytest.mark.parametrize(("arch", "cut"), LISTED)
def test_a_listed_cut_shrinks_the_model_and_keeps_its_predictions(
    arch: str, cut: str, export_tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    manifest = run_recipe(export_tiny(arch), tmp_path / "cut", f"[[passes]]\n{CUTS[cut]}")
    record = manifest["passes"][-1]
    kept = ("nonzero_after", "nonzero_before") if cut == "sparsify" else ("parameters_after", "parameters_before")
    assert record[kept[0]] < record[kept[1]]
    assert manifest["sanity"]["top1_agreement"] >= 0.8


@pytest.mark.parametrize(("arch", "cut"), UNLISTED)
def test_an_unlisted_cut_is_refused_naming_who_takes_it(
    arch: str, cut: str, export_tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    with pytest.raises(BadInput, match=f"{cut} supports llama, mistral, qwen2.* this model is {arch}"):
        run_recipe(export_tiny(arch), tmp_path / "cut", f"[[passes]]\n{CUTS[cut]}")
    assert not (tmp_path / "cut").exists()
