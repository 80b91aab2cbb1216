"""Training text: the shipped calibration passages, never the evaluation sets.

Rows are cut from the Wikipedia passages shipped for calibration (and, when given, more text such
as the teacher's own continuations of them). Before any text is used, every passage that shares
a run of 13 words with an evaluation set (WikiText-2 test, ARC-Easy, LAMBADA) is dropped, the
contamination rule of GPT-3's evaluation: both corpora are Wikipedia, so overlaps are possible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from onnxforge.data import data_file, read_jsonl
from onnxforge.errors import BadInput
from onnxforge.passes.calibration import read_texts
from onnxforge.train.teacher_text import read_teacher_text

NGRAM = 13
EVALUATION_SETS = ("wikitext2", "arc_easy", "lambada")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class TrainingText:
    """The passages kept for training, how many were dropped as overlapping evaluation text, and their digest."""

    passages: list[str]
    dropped: int
    sha256: str


def training_text(extra_files: Sequence[str | Path] = ()) -> TrainingText:
    """The shipped calibration passages plus `extra_files` (.jsonl, .txt, teacher-text folders), decontaminated."""
    passages = read_texts(None) + [text for file in extra_files for text in _extra_texts(Path(file))]
    evaluation = evaluation_ngrams()
    kept = [text for text in passages if not shares_ngram(text, evaluation)]
    digest = hashlib.sha256("\n\n".join(kept).encode("utf-8")).hexdigest()
    return TrainingText(kept, len(passages) - len(kept), digest)


def _extra_texts(path: Path) -> list[str]:
    return read_teacher_text(path) if path.is_dir() else read_texts(str(path))


def token_rows(tokenizer: Tokenizer, passages: Iterable[str], length: int, limit: int | None = None) -> np.ndarray:
    """Rows of `length` token ids [n, length] cut from the passages joined by blank lines (at most `limit`)."""
    ids: list[int] = []
    for text in passages:
        ids += tokenizer.encode(text + "\n\n", add_special_tokens=False).ids
        if limit is not None and len(ids) >= limit * length:
            break
    count = len(ids) // length if limit is None else min(limit, len(ids) // length)
    if count == 0:
        raise BadInput(f"the training text holds {len(ids)} tokens, less than one row of {length}: add text")
    return np.asarray(ids[: count * length], dtype=np.int64).reshape(count, length)


def words(text: str) -> list[str]:
    """Lower-cased words of a text, the unit of the n-gram overlap rule."""
    return _WORD.findall(text.lower())


def ngrams(text: str) -> set[int]:
    """Hashes of every run of NGRAM consecutive words."""
    tokens = words(text)
    return {hash(tuple(tokens[i : i + NGRAM])) for i in range(len(tokens) - NGRAM + 1)}


def shares_ngram(text: str, evaluation: frozenset[int]) -> bool:
    """Whether the text contains a run of NGRAM words that an evaluation set also contains."""
    return not evaluation.isdisjoint(ngrams(text))


@lru_cache(maxsize=1)
def evaluation_ngrams() -> frozenset[int]:
    """Every 13-word run of every shipped evaluation set."""
    texts = [data_file("wikitext2").read_text(encoding="utf-8")]
    texts += [row["text"] for row in read_jsonl("lambada")]
    texts += [f"{row['question']} {' '.join(row['choices']['text'])}" for row in read_jsonl("arc_easy")]
    return frozenset().union(*(ngrams(text) for text in texts))
