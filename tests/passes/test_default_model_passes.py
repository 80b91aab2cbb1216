"""One recipe of each kind on the real default model: it compresses, shrinks, loads and evaluates."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxforge.eval.run import evaluate_folder
from onnxforge.passes.calibration import CalibrationSettings
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from tests.passes.helpers import greedy_with_cache, greedy_without_cache, restored_weight

pytestmark = pytest.mark.slow
CALIBRATION = CalibrationSettings(samples=8, max_tokens=128)
LAYERS, HIDDEN, FFN, HEAD_DIM = 30, 576, 1536, 64


@pytest.fixture(scope="module")
def baseline_perplexity(default_export: tuple[Path, dict[str, Any]]) -> float:
    return evaluate_folder(default_export[0], "wikitext2", 3, threads=2, token_budget=2048)["perplexity"]


def _compressed(
    default_export: tuple[Path, dict[str, Any]], tmp_path: Path, recipe: str
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / recipe
    return out, compress(default_export[0], out, load_recipe(recipe), CALIBRATION)


def _perplexity(folder: Path) -> float:
    return evaluate_folder(folder, "wikitext2", 3, threads=2, token_budget=2048)["perplexity"]


def test_prune_ffn_removes_a_quarter_of_the_channels(default_export, baseline_perplexity, tmp_path: Path) -> None:  # noqa: ANN001
    folder, manifest = _compressed(default_export, tmp_path, "prune-ffn-25")
    removed = LAYERS * (FFN // 4) * 3 * HIDDEN
    assert default_export[1]["parameters"] - manifest["parameters"] == removed
    assert (
        manifest["files_bytes"]["model.onnx_data"] <= default_export[1]["files_bytes"]["model.onnx_data"] - removed * 4
    )
    pruned = _perplexity(folder)
    assert baseline_perplexity < pruned < 3 * baseline_perplexity
    magnitude, _ = _compressed(default_export, tmp_path, "prune-ffn-25-magnitude")
    assert _perplexity(magnitude) > 10 * pruned  # magnitude removes the channels that carry massive activations


def test_prune_heads_keeps_two_of_three_query_heads_per_group(default_export, tmp_path: Path) -> None:  # noqa: ANN001
    folder, manifest = _compressed(default_export, tmp_path, "prune-heads-25")
    assert (manifest["architecture"]["num_heads"], manifest["architecture"]["num_kv_heads"]) == (6, 3)
    removed = LAYERS * 3 * HEAD_DIM * 2 * HIDDEN  # q columns and o rows of 3 heads per layer
    new_shape_constants = LAYERS * 3  # per layer: kv heads and group size of the expansion, heads of its reshape
    assert default_export[1]["parameters"] - manifest["parameters"] == removed - new_shape_constants
    assert greedy_with_cache(folder, tokens=12) == greedy_without_cache(folder, tokens=12)


def test_drop_layers_removes_two_layers_chosen_by_influence(
    default_export, baseline_perplexity, tmp_path: Path
) -> None:  # noqa: ANN001
    folder, manifest = _compressed(default_export, tmp_path, "drop-layers-2")
    record = manifest["passes"][-1]
    assert manifest["architecture"]["num_layers"] == 28 and len(record["layers_dropped"]) == 2
    influence = np.array(record["block_influence"])
    assert all(influence[i] <= np.sort(influence)[1] for i in record["layers_dropped"])
    assert 0 not in record["layers_dropped"]  # the first layer changes the embedding the most
    assert baseline_perplexity < _perplexity(folder) < 3 * baseline_perplexity


def test_two_of_four_sparsity_halves_the_projections_not_the_file(default_export, tmp_path: Path) -> None:  # noqa: ANN001
    folder, manifest = _compressed(default_export, tmp_path, "sparse-2of4")
    record = manifest["passes"][-1]
    assert record["nonzero_after"] == pytest.approx(record["nonzero_before"] / 2, rel=1e-3)
    assert manifest["files_bytes"]["model.onnx_data"] == default_export[1]["files_bytes"]["model.onnx_data"]
    assert np.isfinite(_perplexity(folder))


def test_lowrank_halves_the_factorised_matmuls(default_export, tmp_path: Path) -> None:  # noqa: ANN001
    folder, manifest = _compressed(default_export, tmp_path, "lowrank-50")
    record = manifest["passes"][-1]
    assert record["factorized"] == record["of"] == LAYERS * 7
    projections = LAYERS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * 192 + 3 * HIDDEN * FFN)
    assert default_export[1]["parameters"] - manifest["parameters"] == pytest.approx(projections / 2, rel=0.01)
    assert np.isfinite(_perplexity(folder))


def test_fused_model_generates_the_same_tokens_and_scores(default_export, baseline_perplexity, tmp_path: Path) -> None:  # noqa: ANN001
    from onnxforge.runtime.generate import GenerationSettings, Generator

    folder, manifest = _compressed(default_export, tmp_path, "fuse")
    fused = manifest["passes"][-1]["fused"]
    assert fused["GroupQueryAttention"] == LAYERS and fused["SkipSimplifiedLayerNormalization"] == 2 * LAYERS
    assert manifest["nodes"] < default_export[1]["nodes"] / 4
    prompts = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]
    settings = GenerationSettings(max_new_tokens=32)
    tokens = [
        [c.token_ids for c in Generator(path).generate(prompts, settings).completions]
        for path in (default_export[0], folder)
    ]
    assert tokens[0] == tokens[1]  # a left-padded batch of 3, through the shared KV buffer
    assert _perplexity(folder) == pytest.approx(baseline_perplexity, rel=1e-4)


LLAMA_CPP_Q4_1_MIB = 94  # the anchor's file size: the int4 recipes must not be larger


def test_int4_fits_in_llama_cpp_size_and_gptq_beats_rounding(
    default_export, baseline_perplexity, tmp_path: Path
) -> None:  # noqa: ANN001
    accurate = dataclasses.replace(load_recipe("int4-accurate"), calibration={})  # the tests' small calibration
    folder = tmp_path / "int4-accurate"
    manifest = compress(default_export[0], folder, accurate, CALIBRATION)
    model_bytes = manifest["files_bytes"]["model.onnx"] + manifest["files_bytes"]["model.onnx_data"]
    assert model_bytes <= LLAMA_CPP_Q4_1_MIB * 2**20
    entry = manifest["passes"][-1]
    assert entry["weights_quantized"] == 151 and entry["kept_float"] == []  # 30 x (qkv, o, gate, up, down) + lm_head
    assert entry["weights_already_on_a_4bit_grid"] == 150  # the dequantised Q4_1 layers; lm_head was Q8_0
    assert "GatherBlockQuantized on lm_head's 4-bit codes" == entry["embedding"]
    gptq = _perplexity(folder)
    rounded, _ = _compressed(default_export, tmp_path, "int4")
    # stated in README: this dequantised-Q4_1 model loses ~35 % perplexity at 4 bits (zero points rounded)
    assert baseline_perplexity < gptq < _perplexity(rounded) and gptq < 1.45 * baseline_perplexity


def test_int8_weights_cost_under_one_percent(default_export, baseline_perplexity, tmp_path: Path) -> None:  # noqa: ANN001
    folder, manifest = _compressed(default_export, tmp_path, "int8")
    assert manifest["files_bytes"]["total"] < 0.32 * default_export[1]["files_bytes"]["total"]
    assert _perplexity(folder) < 1.01 * baseline_perplexity


def test_gguf_exact_reproduces_the_dequantised_layers_bit_for_bit(
    default_export, baseline_perplexity, tmp_path: Path
) -> None:  # noqa: ANN001
    import onnx_ir as ir

    from onnxforge.models.sources import named_gguf_path
    from onnxforge.passes.quantize.weight_matmuls import weight_matmuls

    folder, manifest = _compressed(default_export, tmp_path, "int4-gguf-exact")
    fused, _ = _compressed(default_export, tmp_path, "fuse")
    floats = weight_matmuls(ir.load(fused / "model.onnx").graph)
    exact = ir.load(folder / "model.onnx")
    assert len(floats) == 151 and not weight_matmuls(exact.graph)
    for weight in floats:
        bits = 8 if weight.name == "lm_head.weight" else 4
        restored = restored_weight(exact, weight.name, bits, weight.array().shape[0])
        assert np.array_equal(restored, weight.array()), weight.name  # every bit of every weight
    model_bytes = manifest["files_bytes"]["model.onnx"] + manifest["files_bytes"]["model.onnx_data"]
    assert model_bytes < 1.05 * named_gguf_path("smollm2-135m").stat().st_size
    assert _perplexity(folder) < 1.01 * baseline_perplexity  # only the activations' int8 rounding is left
