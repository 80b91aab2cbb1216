"""Scoring through ONNX Runtime with shared contexts: a context common to several requests (ARC's question
under each of its choices) is run once and its KV cache reused for every continuation.

Per batch of contexts of one length: one call over the contexts (with `logits_to_keep`, only each row's last
position goes through the vocabulary projection: it predicts every continuation's first token), then one call
over all their continuations, each context's cache repeated for its continuations. Continuations are made
equally long with filler tokens whose mask is 1: attention is causal, so nothing real attends to them, and
every row has the same number of new tokens (as ONNX Runtime's GroupQueryAttention needs), with no hole in the
mask. Every call feeds at least two new tokens per row (a context of one token is scored whole, a
continuation of two tokens gets a filler): ONNX Runtime's 4-bit MatMulNBits at accuracy_level 4 takes another
kernel for a single new token, whose rounding differs from the multi-token one by up to ~0.5 in a logit, and
whole-sequence scoring never runs it. The scores equal whole-sequence scoring up to float rounding; a request
whose context is its own is scored whole, in batches (`scoring.score_requests`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from onnxforge.eval.scoring import Request, Score, Scorer, check_requests, onnx_logits, score_logits, score_requests
from onnxforge.runtime.decoder import Decoder

_FILLER = 0  # any id: no real token attends to a filler
Context = tuple[int, ...]


def shared_context_scorer(decoder: Decoder) -> Scorer:
    """A scorer that runs each shared context once through `decoder` and the rest as whole sequences."""

    def score(requests: Sequence[Request], token_budget: int, progress: Callable[[int], None]) -> list[Score]:
        return score_sharing_contexts(decoder, requests, token_budget, progress)

    return score


def score_sharing_contexts(
    decoder: Decoder, requests: Sequence[Request], token_budget: int = 4096,
    progress: Callable[[int], None] = lambda n: None,
) -> list[Score]:
    """Scores in the order of `requests`; `progress(n)` after each batch of n requests."""
    check_requests(requests)
    owners: dict[Context, list[int]] = {}
    for index, (ids, start) in enumerate(requests):
        owners.setdefault(tuple(ids[:start]), []).append(index)
    scores: list[Score | None] = [None] * len(requests)
    alone = [i for context, group in owners.items() if not _shareable(context, group) for i in group]
    for index, score in zip(alone, score_requests(onnx_logits(decoder), [requests[i] for i in alone],
                                                  token_budget, progress)):
        scores[index] = score
    shared = {context: group for context, group in owners.items() if _shareable(context, group)}
    for batch in _equal_length_batches(shared, requests, token_budget):
        continuations = [[requests[i][0][len(context):] for i in shared[context]] for context in batch]
        for context, context_scores in zip(batch, _score_contexts(decoder, batch, continuations)):
            for index, score in zip(shared[context], context_scores):
                scores[index] = score
        progress(sum(len(shared[context]) for context in batch))
    return scores  # type: ignore[return-value]


def _shareable(context: Context, group: list[int]) -> bool:
    """Whether a context is worth one run of its own: several requests use it, and it has two tokens or more."""
    return len(group) > 1 and len(context) > 1


def _score_contexts(decoder: Decoder, contexts: list[Context], continuations: list[list[list[int]]]
                    ) -> list[list[Score]]:
    """Scores of each context's continuations, from one call over the contexts and one over the continuations."""
    ids = np.array(contexts, dtype=np.int64)
    rows, length = ids.shape
    positions = np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape)
    first, past = decoder.forward(ids, np.ones_like(ids), np.ascontiguousarray(positions), decoder.empty_past(rows),
                                  last_only=True)
    owner = np.array([row for row, group in enumerate(continuations) for _ in group])
    flat = [continuation for group in continuations for continuation in group]
    following = _following_logits(decoder, past, owner, flat, length)
    scores = [score_logits(np.concatenate([first[row, -1:], following.get(index, first[row, :0])]), tokens)
              for index, (row, tokens) in enumerate(zip(owner, flat))]
    grouped = iter(scores)
    return [[next(grouped) for _ in group] for group in continuations]


def _following_logits(decoder: Decoder, past: list[np.ndarray], owner: np.ndarray, continuations: list[list[int]],
                      context_length: int) -> dict[int, np.ndarray]:
    """Per continuation longer than one token, the logits [len - 1, vocab] after each of its tokens but the last
    (the last is only a target). Continuations of similar length (widths up to a power of two) share a call,
    fillers making them equally wide."""
    following: dict[int, np.ndarray] = {}
    buckets: dict[int, list[int]] = {}
    for index, tokens in enumerate(continuations):
        if len(tokens) > 1:
            buckets.setdefault(1 << (len(tokens) - 2).bit_length(), []).append(index)
    for members in buckets.values():
        width = max(2, max(len(continuations[i]) for i in members) - 1)
        fed = np.array([continuations[i][:-1] + [_FILLER] * (width + 1 - len(continuations[i])) for i in members],
                       np.int64)
        mask = np.ones((len(fed), context_length + width), np.int64)
        positions = np.ascontiguousarray(np.broadcast_to(context_length + np.arange(width, dtype=np.int64), fed.shape))
        rows_past = [np.ascontiguousarray(values[owner[members]]) for values in past]
        logits, _ = decoder.forward(fed, mask, positions, rows_past)
        for row, index in enumerate(members):
            following[index] = logits[row, : len(continuations[index]) - 1]
    return following


def _equal_length_batches(owners: dict[Context, list[int]], requests: Sequence[Request], token_budget: int
                          ) -> Iterator[list[Context]]:
    """Contexts of one length per batch, within the token budget (contexts and continuations together)."""
    batch: list[Context] = []
    spent = 0
    for context in sorted(owners, key=len):
        cost = len(context) + sum(len(requests[i][0]) - len(context) for i in owners[context])
        if batch and (len(context) != len(batch[0]) or spent + cost > token_budget):
            yield batch
            batch, spent = [], 0
        batch.append(context)
        spent += cost
    if batch:
        yield batch
