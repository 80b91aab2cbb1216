"""Structural passes and weight quantisation on tiny BERT and RoBERTa encoders: smaller, still embedding alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxforge.exporter.export import export_model
from onnxforge.models.architectures import ARCHITECTURES
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from onnxforge.runtime.embed import Embedder
from tests.passes.helpers import SMALL_CALIBRATION, run_recipe
from tests.passes.prune.test_architecture_cuts import CUTS

TEXTS = ["the river", "a film about music and the war", "water and people"]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoder-cuts")
    for arch in ("bert", "roberta"):
        export_model(f"tiny:{arch}", root / arch)
    return {arch: root / arch for arch in ("bert", "roberta")}


def _cosines(reference: Path, folder: Path) -> np.ndarray:
    return (Embedder(reference).embed(TEXTS).vectors * Embedder(folder).embed(TEXTS).vectors).sum(axis=1)


@pytest.mark.parametrize(("arch", "cut"), [(a, c) for a in ("bert", "roberta") for c in ARCHITECTURES[a].cut_by])
def test_a_cut_shrinks_the_encoder_and_it_still_embeds(encoders: dict[str, Path], tmp_path: Path, arch: str,
                                                       cut: str) -> None:
    out = tmp_path / "cut"
    manifest = run_recipe(encoders[arch], out, f"[[passes]]\n{CUTS[cut]}")
    record = manifest["passes"][-1]
    kept = ("nonzero_after", "nonzero_before") if cut == "sparsify" else ("parameters_after", "parameters_before")
    assert record[kept[0]] < record[kept[1]]
    assert 0.5 < manifest["sanity"]["embedding_cosine"] < 1.0
    assert _cosines(encoders[arch], out).min() > 0.5
    if cut == "drop-layers":
        assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
        assert manifest["architecture"]["num_layers"] == 1


@pytest.mark.parametrize(("recipe", "cosine"), [("int8", 0.999), ("int4", 0.95)])
def test_int8_and_int4_weights_keep_the_embeddings(encoders: dict[str, Path], tmp_path: Path, recipe: str,
                                                   cosine: float) -> None:
    manifest = compress(encoders["bert"], tmp_path / recipe, load_recipe(recipe), SMALL_CALIBRATION)
    assert manifest["files_bytes"]["total"] < json.loads((encoders["bert"] / "onnxforge.json").read_text())[
        "files_bytes"]["total"]
    assert _cosines(encoders["bert"], tmp_path / recipe).min() > cosine
