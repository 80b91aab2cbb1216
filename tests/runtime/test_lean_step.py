"""The token loop (IO binding, a cache bound once, kept logits buffers) against a loop of plain session calls
with numpy caches: the same tokens for greedy, seeded and penalised sampling, alone and batched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import FINISHED, TokenLoop, pad_rows
from onnxforge.runtime.sampling import SamplingSettings, next_tokens

ROWS = [[5, 6, 7, 8, 9, 10, 11], [40, 3], [17, 18, 19, 20]]
NEW_TOKENS = 12
SAMPLINGS = {
    "greedy": SamplingSettings(),
    "seeded": SamplingSettings(temperature=0.9, top_k=20, top_p=0.9, seed=7),
    "penalised": SamplingSettings(temperature=0.7, repetition_penalty=1.3, seed=3),
}


def _plain_loop(decoder: Decoder, rows: list[list[int]], sampling: SamplingSettings,
                stop_ids: frozenset[int] = frozenset()) -> list[list[int]]:
    """Each row's tokens from `session.run` with numpy feeds (FINISHED after a stop id), as simply as possible."""
    ids, mask = pad_rows(rows)
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
    lay = decoder.layout
    length = ids.shape[1] + NEW_TOKENS if lay.shared_buffer else 0
    past = [np.zeros((len(rows), lay.num_kv_heads, length, lay.head_dim), lay.dtype) for _ in lay.past_names()]
    rng, out = np.random.default_rng(sampling.seed), []
    seen = np.zeros((len(rows), 1 << 16), dtype=bool)
    for i, row in enumerate(rows):
        seen[i, row] = True
    finished = np.zeros(len(rows), dtype=bool)
    for _ in range(NEW_TOKENS):
        logits, past = decoder.forward(ids, mask, positions, past)
        vocab = logits.shape[-1]
        tokens = np.where(finished, FINISHED, next_tokens(logits[:, -1], seen[:, :vocab], sampling, rng))
        seen[np.arange(len(rows)), tokens] |= tokens != FINISHED
        out.append(tokens)
        finished |= np.isin(tokens, list(stop_ids))
        ids = np.where(tokens == FINISHED, 0, tokens)[:, None]
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
        positions = positions[:, -1:] + 1
    return np.array(out).T.tolist()


def _loop(decoder: Decoder, rows: list[list[int]], sampling: SamplingSettings,
          stop_ids: frozenset[int] = frozenset()) -> list[list[int]]:
    steps = list(TokenLoop(decoder, rows, NEW_TOKENS, sampling, stop_ids))
    steps += [np.full(len(rows), FINISHED)] * (NEW_TOKENS - len(steps))
    return np.array(steps).T.tolist()


@pytest.fixture(scope="module", params=["export", "fused"])
def decoder(request: pytest.FixtureRequest, export_tiny: Callable[[str], Path],
            fused_tiny: Callable[[str], Path]) -> Decoder:
    folder = export_tiny("llama") if request.param == "export" else fused_tiny("llama")
    decoder = Decoder(folder)
    assert decoder.layout.shared_buffer == decoder.last_token_only == (request.param == "fused")
    return decoder


@pytest.mark.parametrize("sampling", SAMPLINGS.values(), ids=SAMPLINGS.keys())
@pytest.mark.parametrize("rows", [ROWS[:1], ROWS], ids=["alone", "batched"])
def test_the_loop_gives_the_tokens_of_plain_calls(decoder: Decoder, rows: list[list[int]],
                                                  sampling: SamplingSettings) -> None:
    assert _loop(decoder, rows, sampling) == _plain_loop(decoder, rows, sampling)


def test_a_row_that_stops_does_not_change_the_others(decoder: Decoder) -> None:
    free = _plain_loop(decoder, ROWS, SAMPLINGS["seeded"])
    stop = frozenset({free[1][2]})
    stopped = _loop(decoder, ROWS, SAMPLINGS["seeded"], stop)
    assert stopped == _plain_loop(decoder, ROWS, SAMPLINGS["seeded"], stop)
    assert stopped[1][3:] == [FINISHED] * (NEW_TOKENS - 3)


def test_two_generations_in_a_row_rebind_their_own_cache(decoder: Decoder) -> None:
    first = _loop(decoder, ROWS[:2], SAMPLINGS["greedy"])
    _loop(decoder, ROWS[2:], SAMPLINGS["greedy"])
    assert _loop(decoder, ROWS[:2], SAMPLINGS["greedy"]) == first
