"""ARC-Easy acc_norm under different length normalisations, on one set of scores (explains 0.430 vs 0.435).

    .venv/bin/python benchmarks/arc_norm_lengths.py /tmp/smol
"""

from __future__ import annotations

import sys

import numpy as np

from onnxforge.eval import tasks
from onnxforge.eval.scoring import onnx_logits, score_requests
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.session import SessionSettings
from onnxforge.runtime.text import TextCodec

LENGTHS = {
    "UTF-8 bytes of the choice (our default)": lambda text, tokens: len(text.encode("utf-8")),
    "UTF-8 bytes of ' ' + choice": lambda text, tokens: len((" " + text).encode("utf-8")),
    "tokens of the choice": lambda text, tokens: tokens,
}


def main(folder: str) -> None:
    """Score ARC-Easy once, then print acc_norm for every length definition."""
    requests, questions = tasks.arc_easy_requests(TextCodec(folder).encode, None)
    scores = score_requests(onnx_logits(Decoder(folder, SessionSettings.with_threads(2))), requests)
    right = dict.fromkeys(LENGTHS, 0)
    cursor = 0
    for question in questions:
        texts = question["choices"]["text"]
        chosen = scores[cursor:cursor + len(texts)]
        gold = question["choices"]["label"].index(question["answerKey"])
        logprobs = np.array([s.logprob for s in chosen])
        for name, length in LENGTHS.items():
            sizes = np.array([length(text, s.tokens) for text, s in zip(texts, chosen)])
            right[name] += int((logprobs / sizes).argmax() == gold)
        cursor += len(texts)
    for name, count in right.items():
        print(f"{name}: acc_norm {count / len(questions):.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
