"""The passes a recipe can name, with their config classes."""

from __future__ import annotations

from onnxforge.passes.cleanup import CleanupConfig, CleanupPass
from onnxforge.passes.drop_layers import DropLayersConfig, DropLayersPass
from onnxforge.passes.float16 import Float16Config, Float16Pass
from onnxforge.passes.fuse import FuseConfig, FuseForOrtPass
from onnxforge.passes.lowrank import FactorizeMatMulsPass, LowRankConfig
from onnxforge.passes.mixed_precision import MixedPrecisionConfig, MixedPrecisionPass
from onnxforge.passes.prune_ffn import PruneFfnConfig, PruneFfnPass
from onnxforge.passes.prune_heads import PruneHeadsConfig, PruneHeadsPass
from onnxforge.passes.quantize_int8 import Int8Config, QuantizeInt8Pass
from onnxforge.passes.quantize_weights import QuantizeWeightsPass, WeightQuantConfig
from onnxforge.passes.registry import RegisteredPass
from onnxforge.passes.sparsity import SparsifyWeightsPass, SparsityConfig

PASSES: dict[str, RegisteredPass] = {
    "cleanup": RegisteredPass(CleanupPass, CleanupConfig, "fold constants, remove dead and duplicate nodes"),
    "fuse": RegisteredPass(
        FuseForOrtPass,
        FuseConfig,
        "ONNX Runtime kernels: GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayerNorm",
    ),
    "prune-ffn": RegisteredPass(PruneFfnPass, PruneFfnConfig, "remove FFN channels (gate/up columns, down rows)", True),
    "prune-heads": RegisteredPass(
        PruneHeadsPass, PruneHeadsConfig, "remove attention heads (query heads per group, or KV groups)", True
    ),
    "drop-layers": RegisteredPass(
        DropLayersPass, DropLayersConfig, "remove the decoder layers that change the hidden state least", True
    ),
    "sparsify": RegisteredPass(
        SparsifyWeightsPass, SparsityConfig, "zero weights: unstructured or 2:4 (dense storage)", True
    ),
    "lowrank": RegisteredPass(
        FactorizeMatMulsPass, LowRankConfig, "factorise MatMuls by truncated SVD where it saves parameters", True
    ),
    "quantize-weights": RegisteredPass(
        QuantizeWeightsPass,
        WeightQuantConfig,
        "weight-only int4/int8 block quantisation (MatMulNBits or block-wise DequantizeLinear), embedding included",
        True,
    ),
    "quantize-int8": RegisteredPass(
        QuantizeInt8Pass,
        Int8Config,
        "int8 weights and activations via onnxruntime.quantization: dynamic, or static QDQ with calibration",
        True,
    ),
    "mixed-precision": RegisteredPass(
        MixedPrecisionPass,
        MixedPrecisionConfig,
        "measure each layer's int4 damage, pick int4/int8/float per layer to fit a perplexity budget",
        True,
    ),
    "float16": RegisteredPass(
        Float16Pass, Float16Config, "float16 weights and compute for GPU providers (float32 inputs/outputs kept)"
    ),
}
