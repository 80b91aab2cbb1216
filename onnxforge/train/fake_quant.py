"""Quantisation-aware training: the student's weights seen through the int4 grid the quantisation pass will use.

`fake_quantize` is `passes/quantize/blockwise.py`'s round-to-nearest grid written in torch with the
same float32 operations in the same order (block min/max, scale, rounded zero point, nearest code,
dequantise), so the weights a student trains through are, bit for bit, the weights the
`quantize-weights` pass stores for its float weights afterwards: nothing is re-rounded after
training. Gradients pass straight through the rounding (STE). The weights quantised are those the
pass quantises: every projection (a Linear, a low-rank factor) and the embedding table, which the
tied lm_head reads as well.
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from onnxforge.passes.quantize.weight_matmuls import MIN_K
from onnxforge.train.student import LowRankLinear

QUANTIZE_CHOICES = ("int4",)
BITS, BLOCK = 4, 32  # the `int4` recipe's grid: asymmetric, whole zero points, blocks of 32 along K


def fake_quantize(weight: torch.Tensor, bits: int = BITS, block: int = BLOCK) -> torch.Tensor:
    """W [K, N] replaced by its block-wise round-to-nearest int4 values (blocks of `block` along K)."""
    k, n = weight.shape
    padded = torch.nn.functional.pad(weight, (0, 0, 0, -k % block))
    blocks = padded.reshape(-1, block, n)
    top = (1 << bits) - 1
    low, high = blocks.amin(dim=1), blocks.amax(dim=1)
    scales = (high - low) / top
    zeros = -low / torch.where(scales == 0, torch.ones_like(scales), scales)
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)
    zeros = torch.clamp(torch.round(zeros), 0, top)
    codes = torch.clamp(torch.round(blocks / scales[:, None] + zeros[:, None]), 0, top)
    return ((codes - zeros[:, None]) * scales[:, None]).reshape(-1, n)[:k]


class StraightThrough(torch.nn.Module):
    """A parametrisation: forward through the fake-quantised weight, backward as if it were the weight."""

    def __init__(self, stored_transposed: bool) -> None:
        super().__init__()
        self.stored_transposed = stored_transposed  # torch holds [N, K] (Linear, Embedding) or [K, N] (factors)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            grid = fake_quantize(weight.T).T if self.stored_transposed else fake_quantize(weight)
        return weight + (grid - weight).detach()


def quantized_weights(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, bool]]:
    """(module, parameter name, stored [N, K]) of every weight the int4 pass quantises."""
    found = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.in_features >= MIN_K:
            found.append((module, "weight", True))
        elif module is model.get_input_embeddings():  # the token table (position tables stay float)
            found.append((module, "weight", True))
        elif isinstance(module, LowRankLinear):
            factors = ("lowrank_a", "lowrank_b")
            found += [(module, name, False) for name in factors if getattr(module, name).shape[0] >= MIN_K]
    return found


def add_fake_quant(model: torch.nn.Module) -> int:
    """Let every quantised weight be seen through its int4 grid; return how many."""
    weights = quantized_weights(model)
    for module, name, transposed in weights:
        parametrize.register_parametrization(module, name, StraightThrough(transposed))
    return len(weights)


def remove_fake_quant(model: torch.nn.Module) -> None:
    """Back to the plain float (latent) weights, which the quantisation pass turns into the same codes."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=False)
