"""Export-time form of LongRoPE's frequency switch (Phi-3 and others with `rope_type = "longrope"`).

transformers picks LongRoPE's short or long inverse frequencies on every call (`torch.where` on
`max(position_ids) + 1 > original_max_position_embeddings`) and copies the choice into the
`inv_freq` buffer in place. torch's exporter keeps the buffer's first value for the rotary that
follows, so the export is right up to the original length and wrong beyond it (the long-past
parity probes catch it). While tracing, each such rotary module makes the same choice
functionally and lends it to the undecorated forward.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

_LONGROPE = "longrope"


@contextmanager
def functional_longrope(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, every LongRoPE rotary module of `model` selects its frequencies without mutation."""
    patched = []
    for module in model.modules():
        forward = type(module).forward
        if getattr(module, "rope_type", None) == _LONGROPE and hasattr(forward, "__wrapped__"):
            module.forward = types.MethodType(_selecting(forward.__wrapped__), module)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _selecting(rope_forward: Callable) -> Callable:
    """`rope_forward` (cos/sin from `self.inv_freq`) with `inv_freq` chosen short or long for this call."""

    def forward(self: torch.nn.Module, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        original = self.config.rope_parameters["original_max_position_embeddings"]
        long, _ = ROPE_INIT_FUNCTIONS[_LONGROPE](self.config, x.device, seq_len=original + 1)
        self.__dict__["inv_freq"] = torch.where(position_ids.max() + 1 > original, long, self.original_inv_freq)
        try:
            return rope_forward(self, x, position_ids)
        finally:
            del self.__dict__["inv_freq"]

    return forward
