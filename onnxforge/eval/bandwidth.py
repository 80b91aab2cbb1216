"""How close decode is to the memory-bandwidth limit: this machine's read bandwidth, and bytes per token.

Decoding one token at batch 1 reads every weight once (the tied embedding included: it is the vocabulary
projection) plus the keys and values of every past position. `read_bandwidth` measures what `threads`
threads can stream from memory (each sums its share of a buffer far larger than the caches, best of a few
passes, numpy releasing the GIL); an engine's achieved rate is bytes per token times its tokens per second.
"""

from __future__ import annotations

import threading
import time

import numpy as np

_BUFFER_BYTES = 1 << 30  # 1 GiB: far beyond any cache
_PASSES = 5


def read_bandwidth(threads: int = 2, buffer_bytes: int = _BUFFER_BYTES, passes: int = _PASSES) -> float:
    """Bytes per second that `threads` threads read from memory (best of `passes`)."""
    buffer = np.ones(buffer_bytes // 4, dtype=np.float32)  # written now: no page faults while timing
    shares = np.array_split(buffer, threads)
    best = float("inf")
    for _ in range(passes):
        workers = [threading.Thread(target=np.add.reduce, args=(share,)) for share in shares]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - start)
    return buffer.nbytes / best


def kv_bytes_per_position(num_layers: int, num_kv_heads: int, head_dim: int, dtype_bytes: int = 4) -> int:
    """Bytes of keys and values one position holds over all layers."""
    return 2 * num_layers * num_kv_heads * head_dim * dtype_bytes


def bytes_per_token(weight_bytes: int, kv_position_bytes: int, prompt_tokens: int, new_tokens: int) -> int:
    """Bytes a batch-1 decode step reads on average over `new_tokens` steps after a prompt: every weight
    once, and the cache at the mean past length."""
    mean_past = prompt_tokens + new_tokens / 2
    return int(weight_bytes + kv_position_bytes * mean_past)
