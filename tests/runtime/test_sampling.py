"""Sampling: validated settings, seeded draws, filters that restrict the support, repetition penalty."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.errors import BadInput
from onnxforge.runtime.sampling import (
    SamplingSettings,
    keep_top_k,
    keep_top_p,
    next_tokens,
    penalize_repetition,
    softmax,
)

PROBS = np.array([[0.5, 0.3, 0.15, 0.05]])
LOGITS = np.log(PROBS).astype(np.float32)
NOTHING_SEEN = np.zeros_like(LOGITS, dtype=bool)


def _draws(settings: SamplingSettings, logits: np.ndarray = LOGITS, n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(settings.seed)
    rows = np.repeat(logits, n, axis=0)
    return next_tokens(rows, np.zeros_like(rows, dtype=bool), settings, rng)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("temperature", -0.1, "temperature must be >= 0"),
    ("top_p", 0.0, r"top-p must be in \(0, 1\]"),
    ("top_p", 1.5, r"top-p must be in \(0, 1\]"),
    ("top_k", -1, "top-k must be >= 0"),
    ("repetition_penalty", 0.0, "repetition penalty must be > 0"),
])
def test_invalid_settings_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        SamplingSettings(**{field: value})


def test_greedy_is_the_argmax() -> None:
    assert next_tokens(LOGITS, NOTHING_SEEN, SamplingSettings(), np.random.default_rng(0)).tolist() == [0]


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    first, again = _draws(SamplingSettings(temperature=1, seed=7)), _draws(SamplingSettings(temperature=1, seed=7))
    other = _draws(SamplingSettings(temperature=1, seed=8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_draws_follow_the_tempered_distribution() -> None:
    for temperature in (1.0, 0.5):
        frequencies = np.bincount(_draws(SamplingSettings(temperature=temperature, seed=1), n=20000), minlength=4) / 20000
        assert np.allclose(frequencies, softmax(LOGITS / temperature)[0], atol=0.015)


def test_top_k_restricts_the_support_to_the_k_most_likely() -> None:
    assert set(_draws(SamplingSettings(temperature=1, top_k=2, seed=0)).tolist()) == {0, 1}
    assert np.isneginf(keep_top_k(LOGITS, 3)).tolist() == [[False, False, False, True]]


@pytest.mark.parametrize(("p", "support"), [(0.5, {0}), (0.7, {0, 1}), (0.8, {0, 1}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_p(p: float, support: set[int]) -> None:
    assert set(_draws(SamplingSettings(temperature=1, top_p=p, seed=0)).tolist()) == support


def test_top_p_on_a_large_vocabulary_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    for scale in (8.0, 1.0):  # peaky (the top few hundred hold p) and flat (they do not)
        logits = (rng.standard_normal((3, 50000)) * scale).astype(np.float32)
        probs = softmax(logits)
        order = np.argsort(-probs, axis=-1)
        mass_before = np.cumsum(np.take_along_axis(probs, order, -1), -1) - np.take_along_axis(probs, order, -1)
        expected = np.zeros_like(logits, dtype=bool)
        np.put_along_axis(expected, order, mass_before < 0.9, axis=-1)
        assert np.array_equal(np.isfinite(keep_top_p(logits, 0.9)), expected)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens() -> None:
    logits = np.array([[2.0, -1.0, 3.0, 0.5]], dtype=np.float32)
    seen = np.array([[True, True, False, False]])
    assert penalize_repetition(logits, seen, 2.0).tolist() == [[1.0, -2.0, 3.0, 0.5]]
    assert penalize_repetition(logits, seen, 1.0) is logits


def test_repetition_penalty_changes_the_greedy_choice() -> None:
    logits = np.array([[2.0, 1.5]], dtype=np.float32)
    seen = np.array([[True, False]])
    rng = np.random.default_rng(0)
    assert next_tokens(logits, seen, SamplingSettings(), rng).tolist() == [0]
    assert next_tokens(logits, seen, SamplingSettings(repetition_penalty=1.5), rng).tolist() == [1]
