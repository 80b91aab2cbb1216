"""Log-likelihood of continuations: the one measurement every task is built on.

A request is (token ids, start): the score is the sum of log p(ids[t] | ids[:t]) for t >= start,
and whether every one of those tokens is also the argmax (greedy). Requests are batched by
length with right padding under a token budget; the same code scores through ONNX Runtime
(our Decoder, no torch) or through a torch model, so a difference between the two comes from the
model, never from the scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import pad_rows

Request = tuple[list[int], int]
LogitsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Scorer = Callable[[Sequence[Request], int, Callable[[int], None]], list["Score"]]  # requests, token budget, progress


@dataclass(frozen=True)
class Score:
    """Sum of log-probabilities of the scored tokens, their count, and whether all were greedy."""

    logprob: float
    tokens: int
    greedy: bool


def onnx_logits(decoder: Decoder) -> LogitsFn:
    """Logits [batch, seq, vocab] of a right-padded batch, through ONNX Runtime with an empty past."""

    def logits(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        return decoder.forward(ids, mask, np.ascontiguousarray(positions), decoder.empty_past(ids.shape[0]))[0]

    return logits


def whole_sequence_scorer(logits: LogitsFn) -> Scorer:
    """A scorer that runs every request whole through `logits` (torch, or any engine without a KV cache)."""

    def score(requests: Sequence[Request], token_budget: int, progress: Callable[[int], None]) -> list[Score]:
        return score_requests(logits, requests, token_budget, progress)

    return score


def check_requests(requests: Sequence[Request]) -> None:
    """ValueError unless every request has a context token before its first scored token."""
    if any(not 1 <= start < len(ids) for ids, start in requests):
        raise ValueError("every request needs a context token before its first scored token")


def score_requests(
    logits: LogitsFn,
    requests: Sequence[Request],
    token_budget: int = 4096,
    progress: Callable[[int], None] = lambda n: None,
) -> list[Score]:
    """Scores in the order of `requests`; `progress(n)` after each batch of n requests."""
    check_requests(requests)
    scores: list[Score | None] = [None] * len(requests)
    for batch in _batches(requests, token_budget):
        rows = [requests[i] for i in batch]
        ids, mask = pad_rows([row for row, _ in rows], right=True)
        all_logits = logits(ids, mask)
        for index, (row, start), row_logits in zip(batch, rows, all_logits):
            scores[index] = score_logits(row_logits[start - 1:len(row) - 1], row[start:])
        progress(len(batch))
    return scores  # type: ignore[return-value]


def score_logits(predicting: np.ndarray, tokens: list[int]) -> Score:
    """The score of `tokens` from the logits [len(tokens), vocab] that predict them."""
    targets = np.array(tokens)
    peak = predicting.max(-1, keepdims=True)
    log_norm = np.log(np.exp(predicting - peak).sum(-1, dtype=np.float64)) + peak[:, 0]
    logprobs = predicting[np.arange(len(targets)), targets].astype(np.float64) - log_norm
    greedy = bool((predicting.argmax(-1) == targets).all())
    return Score(float(logprobs.sum()), len(targets), greedy)


def _batches(requests: Sequence[Request], token_budget: int) -> Iterator[list[int]]:
    """Indices grouped longest first so that a batch pads little and stays within the budget."""
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
    batch: list[int] = []
    for index in order:
        width = len(requests[batch[0]][0]) if batch else len(requests[index][0])
        if batch and width * (len(batch) + 1) > token_budget:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch
