"""A minimal greedy loop over a Decoder (batch 1): prefill the prompt, then one token per call."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from onnxforge.runtime.decoder import Decoder


def greedy_tokens(
    decoder: Decoder, prompt_ids: list[int], max_new_tokens: int, stop_ids: frozenset[int] = frozenset()
) -> Iterator[int]:
    """Yield greedy next tokens until `max_new_tokens` or a stop id (which is yielded too)."""
    if not prompt_ids:
        raise ValueError("the prompt has no tokens")
    ids = np.array([prompt_ids], dtype=np.int64)
    positions = np.arange(len(prompt_ids), dtype=np.int64)[None]
    past = decoder.empty_past(batch=1)
    for step in range(max_new_tokens):
        mask = np.ones((1, past[0].shape[2] + ids.shape[1]), dtype=np.int64)
        logits, past = decoder.forward(ids, mask, positions, past)
        token = int(logits[0, -1].argmax())
        yield token
        if token in stop_ids:
            return
        ids = np.array([[token]], dtype=np.int64)
        positions = positions[:, -1:] + 1
