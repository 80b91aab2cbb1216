"""Make transformers' GGUF loading cheaper without changing what it loads.

Loading one GGUF through transformers parses the file three times (config, weights,
tokenizer; ~5 s each for the default model) and rebuilds gguf's tensor-name map once per
module (~400 times, ~6 s). Inside `cached_gguf_parsing()` both are computed once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cached_gguf_parsing() -> Iterator[None]:
    """Within the block, `gguf.GGUFReader` and `gguf.get_tensor_name_map` remember their results."""
    import gguf

    originals = {name: getattr(gguf, name) for name in ("GGUFReader", "get_tensor_name_map")}
    for name, function in originals.items():
        setattr(gguf, name, functools.cache(function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(gguf, name, function)
