"""The three evaluations, each a list of scoring requests and the metrics computed from the scores.

Protocols (kept comparable with published figures, see data/README.md):
- wikitext2: the test file joined as is, tokenized once without BOS, windows of `window` tokens
  every `stride` tokens; each window scores the tokens no earlier window scored (the Hugging Face
  sliding-window recipe); token-level perplexity. `limit` = number of windows.
- arc_easy: zero-shot; each choice scored as " {text}" after "Question: {question}\\nAnswer:";
  acc = most likely choice, acc_norm = most likely per UTF-8 byte of the choice text.
- lambada: the text without its last word as context, " {last word}" as continuation; acc = every
  token of the word is the greedy choice; perplexity = exp(-mean log-likelihood of the word).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.data import data_file, read_jsonl
from onnxforge.eval.scoring import Request, Score

Encode = Callable[[str], list[int]]
WINDOW, STRIDE = 512, 512


def wikitext2_requests(encode: Encode, limit: int | None, window: int = WINDOW, stride: int = STRIDE) -> list[Request]:
    """Sliding windows over the tokenized test file."""
    ids = encode(data_file("wikitext2").read_text(encoding="utf-8"))
    requests, scored_until = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        chunk = ids[begin:end]
        requests.append((chunk, max(1, len(chunk) - (end - scored_until))))
        scored_until = end
        if end == len(ids) or len(requests) == limit:
            break
    return requests


def wikitext2_metrics(scores: list[Score], **_: Any) -> dict[str, float]:
    """Token-level perplexity over every scored token."""
    tokens = sum(s.tokens for s in scores)
    return {"perplexity": math.exp(-sum(s.logprob for s in scores) / tokens), "scored_tokens": tokens}


def arc_easy_requests(encode: Encode, limit: int | None) -> tuple[list[Request], list[dict[str, Any]]]:
    """One request per (question, choice); the questions are returned for the metrics."""
    questions = read_jsonl("arc_easy")[:limit]
    requests = []
    for question in questions:
        context = f"Question: {question['question']}\nAnswer:"
        requests += [continuation_request(encode, context, f" {text}") for text in question["choices"]["text"]]
    return requests, questions


def arc_easy_metrics(scores: list[Score], questions: list[dict[str, Any]], **_: Any) -> dict[str, float]:
    """acc and byte-length-normalised acc_norm."""
    right = right_norm = 0
    cursor = 0
    for question in questions:
        texts = question["choices"]["text"]
        logprobs = np.array([s.logprob for s in scores[cursor:cursor + len(texts)]])
        lengths = np.array([len(text.encode("utf-8")) for text in texts])
        gold = question["choices"]["label"].index(question["answerKey"])
        right += int(logprobs.argmax() == gold)
        right_norm += int((logprobs / lengths).argmax() == gold)
        cursor += len(texts)
    return {"acc": right / len(questions), "acc_norm": right_norm / len(questions)}


def lambada_requests(encode: Encode, limit: int | None) -> list[Request]:
    """Context = the text without its last word, continuation = the last word after a space."""
    requests = []
    for row in read_jsonl("lambada")[:limit]:
        context, word = row["text"].rsplit(" ", 1)
        requests.append(continuation_request(encode, context, f" {word}"))
    return requests


def lambada_metrics(scores: list[Score], **_: Any) -> dict[str, float]:
    """Greedy last-word accuracy and the word's perplexity."""
    return {
        "acc": sum(s.greedy for s in scores) / len(scores),
        "perplexity": math.exp(-sum(s.logprob for s in scores) / len(scores)),
    }


def continuation_request(encode: Encode, context: str, continuation: str) -> Request:
    """Ids of context + continuation and where the continuation starts (lm-eval's split)."""
    whole = encode(context + continuation)
    return whole, min(len(encode(context)), len(whole) - 1)
