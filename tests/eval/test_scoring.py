"""Scoring: exact on hand-made logits, independent of batching, equal to the Hugging Face recipe, ONNX == torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxforge.eval import tasks
from onnxforge.eval.reference import torch_logits
from onnxforge.eval.run import evaluate
from onnxforge.eval.scoring import onnx_logits, score_requests, whole_sequence_scorer
from onnxforge.eval.shared_context import score_sharing_contexts, shared_context_scorer
from onnxforge.models import load_source
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.text import TextCodec

VOCAB = 5


def _one_hot_logits(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Predicts 'next id = current id + 1' with logit 2, every other id with logit 0."""
    logits = np.zeros((*ids.shape, VOCAB), dtype=np.float32)
    np.put_along_axis(logits, ((ids + 1) % VOCAB)[..., None], 2.0, axis=-1)
    return logits


def test_scores_are_exact_log_probabilities_with_the_greedy_flag() -> None:
    [counting, jumping] = score_requests(_one_hot_logits, [([0, 1, 2, 3], 1), ([0, 1, 3], 2)])
    p_hit = math.exp(2) / (math.exp(2) + VOCAB - 1)
    assert counting.tokens == 3 and counting.greedy and counting.logprob == pytest.approx(3 * math.log(p_hit))
    assert jumping.tokens == 1 and not jumping.greedy
    assert jumping.logprob == pytest.approx(math.log(1 / (math.exp(2) + VOCAB - 1)))


def test_scores_do_not_depend_on_batching(export_tiny: Callable[[str], Path]) -> None:
    logits = onnx_logits(Decoder(export_tiny("llama")))
    requests = [(list(range(10, 10 + n)), n // 2) for n in (5, 17, 9, 30, 2)]
    one_by_one, batched = score_requests(logits, requests, 1), score_requests(logits, requests, 4096)
    assert [s.greedy for s in one_by_one] == [s.greedy for s in batched]
    np.testing.assert_allclose([s.logprob for s in one_by_one], [s.logprob for s in batched], rtol=1e-5)


def test_a_request_without_context_is_refused() -> None:
    with pytest.raises(ValueError, match="context token"):
        score_requests(_one_hot_logits, [([1, 2], 0)])


def _hugging_face_sliding_window(model: torch.nn.Module, ids: list[int], window: int, stride: int) -> float:
    """The recipe of transformers' perplexity guide, on the same token ids."""
    encodings = torch.tensor([ids])
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, encodings.size(1), stride):
        end = min(begin + window, encodings.size(1))
        trg_len = end - prev_end
        input_ids = encodings[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        valid = (target_ids != -100).sum().item() - 1
        nll_sum, n_tokens, prev_end = nll_sum + loss.item() * valid, n_tokens + valid, end
        if end == encodings.size(1):
            break
    return math.exp(nll_sum / n_tokens)


def test_perplexity_equals_the_hugging_face_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (tasks.data_file("wikitext2").read_text(encoding="utf-8"))[:3000]
    monkeypatch.setattr(tasks, "data_file", lambda name: _Text(text))
    model, encode = load_source("tiny:llama").model, lambda s: list(s.encode("utf-8"))
    ids = encode(text)
    for window, stride in ((128, 128), (128, 48)):
        requests = tasks.wikitext2_requests(encode, None, window, stride)
        ours = tasks.wikitext2_metrics(score_requests(torch_logits("tiny:llama"), requests))["perplexity"]
        assert ours == pytest.approx(_hugging_face_sliding_window(model, ids, window, stride), rel=1e-3)


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self, encoding: str) -> str:
        return self.text


@pytest.mark.parametrize(("task", "limit"), [("wikitext2", 3), ("arc_easy", 12), ("lambada", 12)])
def test_onnx_and_torch_agree_on_every_task(task: str, limit: int, export_tiny: Callable[[str], Path]) -> None:
    folder = export_tiny("llama")
    encode = TextCodec(folder).encode
    ours = evaluate(task, shared_context_scorer(Decoder(folder)), encode, limit, 2048, "onnxruntime")
    reference = evaluate(task, whole_sequence_scorer(torch_logits("tiny:llama")), encode, limit, 2048, "torch")
    for metric in ("perplexity", "acc", "acc_norm"):
        if metric in ours:
            assert ours[metric] == pytest.approx(reference[metric], rel=5e-3, abs=1e-9), metric
    assert ours["n"] == limit


@pytest.mark.parametrize("graph", ["export", "fused"])
def test_shared_contexts_score_as_whole_sequences(graph: str, export_tiny: Callable[[str], Path],
                                                  fused_tiny: Callable[[str], Path]) -> None:
    decoder = Decoder(export_tiny("llama") if graph == "export" else fused_tiny("llama"))
    question, other = list(range(30, 41)), list(range(60, 71))  # two contexts of one length: one batch
    requests = [(question + tail, len(question)) for tail in ([5], [6, 7, 8], [9, 10], list(range(11, 20)))]
    requests += [(other + [3, 4], len(other)), (other + [2], len(other)), ([7, 8, 9, 1, 2], 3), ([50, 51], 1)]
    whole = score_requests(onnx_logits(decoder), requests)
    for budget in (1, 4096):
        shared = score_sharing_contexts(decoder, requests, budget)
        assert [(s.tokens, s.greedy) for s in shared] == [(s.tokens, s.greedy) for s in whole]
        np.testing.assert_allclose([s.logprob for s in shared], [s.logprob for s in whole], rtol=1e-5, atol=1e-5)
