"""The module torch.onnx.export traces: past keys/values in as flat tensors, present out.

torch's dynamo exporter cannot take a DynamicCache as an input, so the wrapper takes one
tensor per key and value and builds the cache inside its forward.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class DecoderWithPast(torch.nn.Module):
    """forward(input_ids, attention_mask, position_ids, *past) -> (logits, *present)."""

    def __init__(self, model: torch.nn.Module, num_layers: int) -> None:
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        cache = DynamicCache()  # full-length layers: sliding windows come from the mask, not a cropped cache
        for layer in range(self.num_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        present = [tensor for layer in output.past_key_values.layers for tensor in (layer.keys, layer.values)]
        return (output.logits, *present)
