"""The passes a recipe can name, with their config classes."""

from __future__ import annotations

from onnxforge.passes.cleanup import CleanupConfig, CleanupPass
from onnxforge.passes.drop_layers import DropLayersConfig, DropLayersPass
from onnxforge.passes.fuse import FuseConfig, FuseForOrtPass
from onnxforge.passes.lowrank import FactorizeMatMulsPass, LowRankConfig
from onnxforge.passes.prune_ffn import PruneFfnConfig, PruneFfnPass
from onnxforge.passes.prune_heads import PruneHeadsConfig, PruneHeadsPass
from onnxforge.passes.registry import RegisteredPass
from onnxforge.passes.sparsity import SparsifyWeightsPass, SparsityConfig

PASSES: dict[str, RegisteredPass] = {
    "cleanup": RegisteredPass(CleanupPass, CleanupConfig, "fold constants, remove dead and duplicate nodes"),
    "fuse": RegisteredPass(
        FuseForOrtPass, FuseConfig, "ONNX Runtime kernels: GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayerNorm"
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
}
