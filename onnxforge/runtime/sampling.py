"""Choosing the next token from logits: small pure numpy functions over a batch [rows, vocab].

The order follows transformers: repetition penalty, then temperature, top-k and top-p, then
either argmax (temperature 0) or one draw per row from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxforge.errors import BadInput


@dataclass(frozen=True)
class SamplingSettings:
    """temperature 0 means greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise BadInput(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise BadInput(f"top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise BadInput(f"top-p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise BadInput(f"repetition penalty must be > 0 (1 = off), got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        """True when the choice is the argmax (after the repetition penalty)."""
        return self.temperature == 0


def penalize_repetition(logits: np.ndarray, seen: np.ndarray | None, penalty: float) -> np.ndarray:
    """Logits of tokens already seen (`seen[row, token]` true) divided by `penalty` if > 0, else multiplied."""
    if penalty == 1:
        return logits
    penalized = np.where(logits > 0, logits / penalty, logits * penalty)
    return np.where(seen, penalized, logits)


def keep_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Logits outside each row's k largest set to -inf (ties with the k-th value are kept)."""
    if k == 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k, axis=-1)[:, -k][:, None]
    return np.where(logits < kth, -np.inf, logits)


def keep_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose probability reaches `p` (at least one)."""
    if p >= 1:
        return logits
    probs = softmax(logits)
    order = _descending_until(probs, p)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    keep_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs < p
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)


def _descending_until(probs: np.ndarray, p: float, first: int = 256) -> np.ndarray:
    """Token ids of each row by falling probability, enough of them to reach mass `p`.

    Sorting only the `first` largest is exact whenever they already hold mass `p` (the usual
    case, and much cheaper than sorting a 50k vocabulary); otherwise the whole row is sorted.
    """
    if first < probs.shape[-1]:
        top = np.argpartition(-probs, first, axis=-1)[:, :first]
        if (np.take_along_axis(probs, top, axis=-1).sum(axis=-1) >= p).all():
            return np.take_along_axis(top, np.argsort(-np.take_along_axis(probs, top, axis=-1), axis=-1), axis=-1)
    return np.argsort(-probs, axis=-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (stable with -inf entries)."""
    shifted = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def next_tokens(
    logits: np.ndarray, seen: np.ndarray | None, settings: SamplingSettings, rng: np.random.Generator
) -> np.ndarray:
    """One token id per row of `logits` [rows, vocab]."""
    logits = penalize_repetition(logits, seen, settings.repetition_penalty)
    if settings.greedy:
        return logits.argmax(axis=-1)
    logits = keep_top_p(keep_top_k(logits / settings.temperature, settings.top_k), settings.top_p)
    cumulative = np.cumsum(softmax(logits), axis=-1, dtype=np.float64)
    draws = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(axis=-1), logits.shape[-1] - 1)
