"""Every named architecture's tiny model through the architecture-free passes: fuse and int4 weights.

`fuse` turns every layer's attention into GroupQueryAttention (sliding layers with their window,
gemma2's soft cap) and keeps the greedy tokens of the unfused export; int4 turns every weight
MatMul into MatMulNBits.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import onnx_ir as ir
import pytest

from onnxforge.folder import KV_CACHE_KEY, read_manifest
from onnxforge.models.tiny import TINY_CONFIGS
from onnxforge.passes.quantize.weight_matmuls import weight_matmuls
from tests.passes.helpers import FUSE_RECIPE, greedy_with_cache, run_recipe

from ..conftest import TINY_ARCHITECTURES

INT4 = '[[passes]]\nname = "quantize-weights"\nbits = 4'


def _op_counts(folder: Path) -> collections.Counter[str]:
    return collections.Counter(node.op_type for node in ir.load(folder / "model.onnx").graph)


def _expected_kernel(arch: str, layer: int) -> tuple[int, float]:
    """(local_window_size, softcap) the layer's GroupQueryAttention must carry, from the tiny config (the gemmas
    slide on even layers)."""
    config = TINY_CONFIGS[arch]
    window = config.get("sliding_window")
    sliding = window is not None and (arch not in ("gemma2", "gemma3_text") or layer % 2 == 0)
    return (window if sliding else -1), float(config.get("attn_logit_softcapping") or 0.0)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_fuse_keeps_the_greedy_tokens(arch: str, export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny(arch)
    run_recipe(folder, tmp_path / "fused", FUSE_RECIPE)
    model = ir.load(tmp_path / "fused" / "model.onnx")
    kernels = [node for node in model.graph if node.op_type == "GroupQueryAttention"]
    assert len(kernels) == 2 and KV_CACHE_KEY in model.metadata_props  # every tiny model has two layers
    for layer, node in enumerate(kernels):
        got = (node.attributes.get_int("local_window_size", -1), node.attributes.get_float("softcap", 0.0))
        assert got == pytest.approx(_expected_kernel(arch, layer)), f"layer {layer}"
    prompt = "a prompt longer than the tiny models' sliding window of sixteen"
    assert greedy_with_cache(tmp_path / "fused", prompt, 32) == greedy_with_cache(folder, prompt, 32)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_int4_quantises_every_weight_matmul(arch: str, export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny(arch)
    manifest = run_recipe(folder, tmp_path / "int4", INT4)
    weights = len(weight_matmuls(ir.load(folder / "model.onnx").graph))
    assert _op_counts(tmp_path / "int4")["MatMulNBits"] == weights == manifest["passes"][-1]["weights_quantized"]
    if arch != "gpt2":  # its Conv1D projections export as Gemm, which quantize-weights does not rewrite yet
        assert manifest["files_bytes"]["total"] < 0.6 * read_manifest(folder)["files_bytes"]["total"]
