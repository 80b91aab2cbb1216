"""A bundled graph against the folder it came from, both in ONNX Runtime: same greedy tokens, close logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onnxforge.errors import ParityError
from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.session import SessionSettings

PROMPTS = ("The capital of France is", "def fibonacci(n):", "Once upon a time")
NEW_TOKENS = 16


def graph_parity(source: Path, root: Path, graph: str) -> dict[str, Any]:
    """Greedy tokens on three prompts and the worst |logits| difference of their prefills; ParityError on mismatch."""
    bundled, original = Generator(root, SessionSettings(graph=graph)), Generator(source)
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    worst = 0.0
    for prompt in PROMPTS:
        ids = original.prompt_ids(prompt, raw=True)
        mine, theirs = (g.run([ids], settings).complete().completions[0].token_ids for g in (bundled, original))
        if mine != theirs:
            raise ParityError(f"{graph} generates other greedy tokens than '{source}' for {prompt!r}: "
                              f"{mine[:8]}... against {theirs[:8]}...")
        worst = max(worst, float(np.abs(_prefill(bundled, ids) - _prefill(original, ids)).max()))
    return {"greedy_tokens_identical": True, "prompts": len(PROMPTS), "new_tokens": NEW_TOKENS,
            "max_abs_logits_diff": worst}


def _prefill(generator: Generator, ids: list[int]) -> np.ndarray:
    decoder = generator.decoder
    row = np.array([ids], np.int64)
    positions = np.arange(row.shape[1], dtype=np.int64)[None]
    return decoder.forward(row, np.ones_like(row), positions, decoder.empty_past(1))[0]
