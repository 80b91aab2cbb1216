"""The KV cache between decoder calls, kept as ONNX Runtime values bound to the session.

Two layouts, chosen from the graph's metadata:
- growing (the exported graph concatenates past and new keys): each call's `present.*` outputs
  stay where ONNX Runtime put them and are bound as the next call's `past_key_values.*`,
  without a copy through numpy or to the host.
- shared buffer (a graph whose attention is ORT's GroupQueryAttention, marked with the
  metadata `onnxforge.kv_cache = shared_buffer`): one preallocated
  [batch, kv_heads, capacity, head_dim] buffer per key and value is bound as both past and
  present, and the kernel writes each new position in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from onnxforge.folder import past_names, present_names


@dataclass(frozen=True)
class CacheLayout:
    """What the graph's past inputs look like: [batch, kv_heads, past, head_dim] per layer."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: type
    shared_buffer: bool
    independent_rows: bool = False  # rows of one call may sit at different positions (folder.INDEPENDENT_ROWS)

    def past_names(self) -> list[str]:
        """Graph input names, key then value for each layer."""
        return past_names(self.num_layers)

    def present_names(self) -> list[str]:
        """Graph output names, in the same order as `past_names`."""
        return present_names(self.num_layers)


class KVCache:
    """Past keys and values for one batch, bound into an IOBinding before every call."""

    def __init__(self, layout: CacheLayout, values: list[ort.OrtValue], capacity: int, device: str = "cpu",
                 device_id: int = 0) -> None:
        self.layout, self.values, self.capacity = layout, values, capacity
        self.device, self.device_id = device, device_id

    @classmethod
    def empty(cls, layout: CacheLayout, batch: int, capacity: int, device: str, device_id: int = 0) -> KVCache:
        """A cache for `batch` rows: past of length 0, or a zeroed shared buffer of `capacity` positions."""
        length = capacity if layout.shared_buffer else 0
        shape = (batch, layout.num_kv_heads, length, layout.head_dim)
        values = [ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, layout.dtype), device, device_id)
                  for _ in range(2 * layout.num_layers)]
        return cls(layout, values, capacity, device, device_id)

    @classmethod
    def over(cls, layout: CacheLayout, arrays: list[np.ndarray]) -> KVCache:
        """A shared-buffer cache over host arrays [batch, kv_heads, capacity, head_dim] (views of a larger
        buffer, say), without a copy: the kernel writes into them."""
        return cls(layout, [ort.OrtValue.ortvalue_from_numpy(array) for array in arrays], arrays[0].shape[2])

    def bind(self, binding: ort.IOBinding) -> None:
        """Bind the past inputs and the present outputs (to the same buffers when shared)."""
        for name, value in zip(self.layout.past_names(), self.values):
            binding.bind_ortvalue_input(name, value)
        for name, value in zip(self.layout.present_names(), self.values):
            if self.layout.shared_buffer:
                binding.bind_ortvalue_output(name, value)
            else:
                binding.bind_output(name, self.device, self.device_id)

    def update(self, present: list[ort.OrtValue]) -> None:
        """Take the call's present outputs as the next past (nothing to do for a shared buffer)."""
        if not self.layout.shared_buffer:
            self.values = present
