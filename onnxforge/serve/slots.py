"""KV memory of a serving engine: one shared-buffer row (a slot) per running request.

One host array [slots, kv_heads, capacity, head_dim] per layer's key and value. Requests decode
together in rows 0..n-1, so that a decode call binds one contiguous view of every array; a
request that ends leaves a hole, which the last row fills (its keys and values are copied, up to
its length). A request being prefilled uses row n alone and joins the batch when it is done.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.kv_cache import CacheLayout, KVCache


class SlotMemory:
    """`slots` rows of `capacity` positions each; `cache(start, stop)` binds rows start..stop-1."""

    def __init__(self, layout: CacheLayout, slots: int, capacity: int) -> None:
        shape = (slots, layout.num_kv_heads, capacity, layout.head_dim)
        self.layout, self.slots, self.capacity = layout, slots, capacity
        # filled now, not on first touch: page faults inside the kernel made a first prefill 10x slower
        self.arrays = [np.full(shape, 0, layout.dtype) for _ in range(2 * layout.num_layers)]
        self._views: dict[tuple[int, int], KVCache] = {}

    @property
    def bytes(self) -> int:
        """Bytes held by the keys and values of every slot."""
        return sum(array.nbytes for array in self.arrays)

    @property
    def bytes_per_token(self) -> int:
        """Bytes one position of one slot takes, over all layers, keys and values."""
        return self.bytes // (self.slots * self.capacity)

    def cache(self, start: int, stop: int) -> KVCache:
        """The rows start..stop-1 as one cache the decoder binds (views: the kernel writes into the slots)."""
        key = (start, stop)
        if key not in self._views:
            self._views[key] = KVCache.over(self.layout, [array[start:stop] for array in self.arrays])
        return self._views[key]

    def move(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` positions of row `source` into row `target`."""
        for array in self.arrays:
            array[target, :, :length] = array[source, :, :length]
