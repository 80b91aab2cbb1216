"""Every named architecture's tiny model through the architecture-free passes: fuse and int4 weights.

`fuse` keeps the greedy tokens of the unfused export (what it fuses differs by architecture);
int4 turns every weight MatMul into MatMulNBits.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import onnx_ir as ir
import pytest

from onnxforge.folder import read_manifest
from onnxforge.passes.quantize.weight_matmuls import weight_matmuls
from tests.passes.helpers import greedy_with_cache, run_recipe

from ..conftest import TINY_ARCHITECTURES

FUSE = '[[passes]]\nname = "cleanup"\n\n[[passes]]\nname = "fuse"'
FUSED_ATTENTION = {  # GroupQueryAttention kernels on the 2-layer tiny model (smollm3: its layer without rotary stays)
    "llama": 2, "mistral": 2, "qwen2": 2, "qwen3": 2, "granite": 2, "olmo2": 2, "smollm3": 1,
    "gemma3_text": 2, "gpt2": 0, "gemma2": 0, "phi3": 0,
}
INT4 = '[[passes]]\nname = "quantize-weights"\nbits = 4'


def _op_counts(folder: Path) -> collections.Counter[str]:
    return collections.Counter(node.op_type for node in ir.load(folder / "model.onnx").graph)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_fuse_keeps_the_greedy_tokens(arch: str, export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny(arch)
    run_recipe(folder, tmp_path / "fused", FUSE)
    assert _op_counts(tmp_path / "fused")["GroupQueryAttention"] == FUSED_ATTENTION[arch]
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


def test_every_tiny_architecture_has_its_expected_kernel_count() -> None:
    assert set(FUSED_ATTENTION) == set(TINY_ARCHITECTURES)
