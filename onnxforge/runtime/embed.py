"""Sentence embeddings from an exported encoder folder, through ONNX Runtime (no torch).

Texts are tokenised with the folder's tokenizer.json (special tokens added, truncated to the
model's `max_seq_length`, padded to the longest text of each batch) and run in batches; the
graph's `sentence_embedding` output is already pooled and normalised as the model was trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxforge.errors import BadInput
from onnxforge.folder import (
    ATTENTION_MASK,
    INPUT_IDS,
    SENTENCE_EMBEDDING,
    TOKEN_TYPE_IDS,
    read_manifest,
    read_tokenizer,
)
from onnxforge.runtime.session import SessionSettings, open_session


@dataclass
class Embeddings:
    """The vectors [texts, dimensions], the tokens each text took, and the seconds spent in the model."""

    vectors: np.ndarray
    tokens: list[int]
    seconds: float


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (so that dot products are cosines, whether or not the graph normalises)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def is_encoder_folder(folder: str | Path) -> bool:
    """Whether the folder holds a feature-extraction (encoder) graph."""
    return (read_manifest(folder).get("architecture") or {}).get("task") == "feature-extraction"


class Embedder:
    """An encoder folder opened for embedding."""

    def __init__(self, folder: str | Path, settings: SessionSettings = SessionSettings()) -> None:
        folder = Path(folder)
        facts = read_manifest(folder).get("architecture") or {}
        if not is_encoder_folder(folder):
            raise BadInput(f"'{folder}' is not an encoder folder (no feature-extraction graph): export an encoder "
                           "such as all-minilm-l6-v2 with onnxforge export")
        self.tokenizer = read_tokenizer(folder)
        pad = int(facts.get("pad_token_id", 0))  # RoBERTa's is 1
        self.max_length = int(facts["max_seq_length"])
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=pad)
        self.session = open_session(folder, settings)
        self.inputs = {value.name for value in self.session.get_inputs()}
        self.dimensions = int(facts["hidden_size"])
        self.name = read_manifest(folder).get("source", {}).get("name", folder.name)

    def embed(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Embed every text (in batches of `batch_size`); BadInput for an empty list or text."""
        if not texts or any(not text.strip() for text in texts):
            raise BadInput("give one or more non-empty texts to embed")
        if batch_size < 1:
            raise BadInput(f"the batch size must be >= 1, got {batch_size}")
        vectors, tokens, seconds = [], [], 0.0
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(texts[start : start + batch_size])
            feeds = {INPUT_IDS: np.array([e.ids for e in encodings], np.int64),
                     ATTENTION_MASK: np.array([e.attention_mask for e in encodings], np.int64)}
            if TOKEN_TYPE_IDS in self.inputs:
                feeds[TOKEN_TYPE_IDS] = np.array([e.type_ids for e in encodings], np.int64)
            began = time.perf_counter()
            vectors.append(self.session.run([SENTENCE_EMBEDDING], feeds)[0])
            seconds += time.perf_counter() - began
            tokens += [int(sum(e.attention_mask)) for e in encodings]
        return Embeddings(np.concatenate(vectors), tokens, seconds)
