"""The passes a recipe can name, with their config classes."""

from __future__ import annotations

from onnxforge.passes.cleanup import CleanupConfig, CleanupPass
from onnxforge.passes.drop_layers import DropLayersConfig, DropLayersPass
from onnxforge.passes.prune_heads import PruneHeadsConfig, PruneHeadsPass
from onnxforge.passes.prune_ffn import PruneFfnConfig, PruneFfnPass
from onnxforge.passes.registry import RegisteredPass

PASSES: dict[str, RegisteredPass] = {
    "cleanup": RegisteredPass(CleanupPass, CleanupConfig, "fold constants, remove dead and duplicate nodes"),
    "prune-ffn": RegisteredPass(PruneFfnPass, PruneFfnConfig, "remove FFN channels (gate/up columns, down rows)", True),
    "drop-layers": RegisteredPass(DropLayersPass, DropLayersConfig, "remove the decoder layers that change the hidden state least", True),
    "prune-heads": RegisteredPass(PruneHeadsPass, PruneHeadsConfig, "remove attention heads (query heads per group, or KV groups)", True),
}
