"""The token loop: prefill a left-padded batch, then decode one token per call with per-row stopping.

Kept small on purpose (after llama2.c's `generate`): the KV cache lives in ONNX Runtime values
bound to the session, and per step the loop only builds three tiny arrays and picks tokens.
A LongRoPE model (Phi-3) switches to its long frequencies past its original length; as
transformers does, the step that first crosses it recomputes the cache over the whole sequence.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.sampling import SamplingSettings, next_tokens

FINISHED = -1


@dataclass
class LoopStats:
    """Where the time went: prefill (time to first token), decode steps, and time inside onnxruntime."""

    prompt_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0
    decode_tokens: int = 0
    decode_session_s: float = 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens produced by decode steps (all rows) per second; 0 when nothing was decoded."""
        return self.decode_tokens / self.decode_s if self.decode_s else 0.0

    @property
    def overhead_s_per_step(self) -> float:
        """Time per decode step spent outside `session.run`: binding, sampling, Python."""
        return (self.decode_s - self.decode_session_s) / self.decode_steps if self.decode_steps else 0.0


class TokenLoop:
    """Iterate to get, per step, one new token per row ([rows] int64, FINISHED for stopped rows)."""

    def __init__(
        self,
        decoder: Decoder,
        rows: list[list[int]],
        max_new_tokens: int,
        sampling: SamplingSettings = SamplingSettings(),
        stop_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.decoder, self.rows, self.max_new_tokens = decoder, rows, max_new_tokens
        self.sampling, self.stop_ids = sampling, np.array(sorted(stop_ids), dtype=np.int64)
        self.finished = np.zeros(len(rows), dtype=bool)
        self.stats = LoopStats(prompt_tokens=sum(len(row) for row in rows))

    def stop_row(self, row: int) -> None:
        """Stop generating for `row` (the others go on)."""
        self.finished[row] = True

    def __iter__(self) -> Iterator[np.ndarray]:
        ids, mask = pad_rows(self.rows)
        positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
        capacity = ids.shape[1] + self.max_new_tokens
        cache = self.decoder.new_cache(len(self.rows), capacity)
        full_mask = np.ones((len(self.rows), capacity), dtype=np.int64)  # each step's mask: a view at batch 1
        full_mask[:, : mask.shape[1]] = mask
        rng = np.random.default_rng(self.sampling.seed)
        choose = _TokenChooser(self.rows, self.sampling, self.stop_ids, rng)
        switch = self.decoder.rope_switch
        fed = ids if switch is not None and ids.shape[1] <= switch else None  # what the cache holds, until the switch
        for step in range(self.max_new_tokens):
            start, session_before = time.perf_counter(), self.decoder.run_seconds
            logits = self.decoder.step(cache, ids, mask, positions)
            tokens = choose(logits, self.finished)
            self._count(step, tokens, time.perf_counter() - start, self.decoder.run_seconds - session_before)
            yield tokens
            self.finished |= choose.stops(tokens)
            if self.finished.all():
                return
            ids = np.where(tokens == FINISHED, 0, tokens)[:, None]
            mask = np.ascontiguousarray(full_mask[:, : mask.shape[1] + 1])
            positions = positions[:, -1:] + 1
            if fed is not None:
                fed = np.concatenate([fed, ids], axis=1)
                if mask.shape[1] == switch + 1:  # as transformers does: recompute the cache with the long factors
                    ids, positions, fed = fed, np.clip(mask.cumsum(axis=1) - 1, 0, None), None
                    cache = self.decoder.new_cache(len(self.rows), cache.capacity)

    def _count(self, step: int, tokens: np.ndarray, seconds: float, session_seconds: float) -> None:
        if step == 0:
            self.stats.prefill_s = seconds
            return
        self.stats.decode_s += seconds
        self.stats.decode_steps += 1
        self.stats.decode_tokens += int((tokens != FINISHED).sum())
        self.stats.decode_session_s += session_seconds


def pad_rows(rows: list[list[int]], right: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ids and attention mask [rows, longest], shorter rows padded with 0 on the left (or the right)."""
    longest = max(len(row) for row in rows)
    ids = np.zeros((len(rows), longest), dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        place = slice(0, len(row)) if right else slice(longest - len(row), longest)
        ids[i, place] = row
        mask[i, place] = 1
    return ids, mask


class _TokenChooser:
    """Picks each row's next token and tells which are stop ids; tracks the tokens seen only when a
    repetition penalty needs them (greedy without a penalty is one argmax per step)."""

    def __init__(self, rows: list[list[int]], sampling: SamplingSettings, stop_ids: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.rows, self.sampling, self.stop_ids, self.rng = rows, sampling, stop_ids, rng
        self.seen: np.ndarray | None = None
        self.is_stop: np.ndarray | None = None

    def __call__(self, logits: np.ndarray, finished: np.ndarray) -> np.ndarray:
        """Token ids [rows] for `logits` [rows, vocab]; FINISHED where a row has stopped."""
        if self.is_stop is None:
            self._start(logits.shape[-1])
        tokens = next_tokens(logits, self.seen, self.sampling, self.rng)
        if finished.any():
            tokens = np.where(finished, FINISHED, tokens)
        if self.seen is not None:
            self.seen[np.arange(len(tokens)), tokens] |= tokens != FINISHED
        return tokens

    def stops(self, tokens: np.ndarray) -> np.ndarray:
        """Which rows produced a stop id."""
        return self.is_stop[tokens]

    def _start(self, vocab: int) -> None:
        self.is_stop = np.zeros(vocab + 1, dtype=bool)  # the extra last entry: FINISHED (-1) is never a stop
        self.is_stop[self.stop_ids[self.stop_ids < vocab]] = True
        if self.sampling.repetition_penalty != 1:
            self.seen = np.zeros((len(self.rows), vocab), dtype=bool)
            for i, row in enumerate(self.rows):
                self.seen[i, row] = True


def greedy_continuations(
    decoder: Decoder, rows: list[list[int]], max_new_tokens: int, stop_ids: frozenset[int] = frozenset()
) -> list[list[int]]:
    """Greedy new ids of each row, a final stop id included, as transformers' generate returns them."""
    new: list[list[int]] = [[] for _ in rows]
    for tokens in TokenLoop(decoder, rows, max_new_tokens, stop_ids=stop_ids):
        for row, token in enumerate(tokens.tolist()):
            if token != FINISHED:
                new[row].append(token)
    return new
