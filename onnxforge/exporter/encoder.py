"""torch encoder -> ONNX feature-extraction graph: `last_hidden_state` and an in-graph `sentence_embedding`.

The graph takes input_ids and attention_mask (and token_type_ids when the model has token types)
of shape [batch_size, sequence_length] and returns last_hidden_state [batch_size, sequence_length,
hidden] and sentence_embedding [batch_size, hidden]: the hidden states pooled as the model's
sentence-transformers configuration says (mean over attended tokens, the [CLS] token, or the max
over attended tokens), then L2-normalised when it has a Normalize module. Parity: the ONNX
embedding against the same pooling done in numpy on torch's hidden states (cosine >= 0.9999) and
the hidden states within 1e-4.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import torch
from torch.export import Dim

from onnxforge.exporter.trace import drop_trace_metadata, name_weights
from onnxforge.folder import (
    ATTENTION_MASK,
    BATCH_DIM,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    SENTENCE_EMBEDDING,
    SEQUENCE_DIM,
    TOKEN_TYPE_IDS,
)
from onnxforge.models.encoders import EncoderFacts, LoadedEncoder
from onnxforge.passes.cleanup import CleanupPass

PARITY_TEXTS = ("A short sentence.", "The river flows through the old city, under three bridges built during the war.",
                "Music and film")
COSINE_TOLERANCE, HIDDEN_TOLERANCE = 0.9999, 1e-4


class EncoderWithPooling(torch.nn.Module):
    """The encoder followed by its sentence pooling (and normalisation)."""

    def __init__(self, model: torch.nn.Module, facts: EncoderFacts) -> None:
        super().__init__()
        self.model, self.facts = model, facts

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(last_hidden_state, sentence_embedding)."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.facts.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.facts.pooling == "max":
            pooled = torch.where(weights > 0, hidden, torch.finfo(hidden.dtype).min).amax(dim=1)
        else:
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.facts.normalize:
            pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return hidden, pooled


def input_names(facts: EncoderFacts) -> list[str]:
    """The graph's inputs, in order."""
    return [INPUT_IDS, ATTENTION_MASK, *([TOKEN_TYPE_IDS] if facts.token_type_ids else [])]


def trace_encoder(loaded: LoadedEncoder, opset: int) -> ir.Model:
    """Export the encoder with pooling as one graph with dynamic batch and sequence, cleaned up."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    wrapper = EncoderWithPooling(loaded.model, loaded.facts).eval()
    names = input_names(loaded.facts)
    ids = torch.randint(5, loaded.facts.vocab_size, (2, 7))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))[: len(names)]
    batch, seq = Dim(BATCH_DIM), Dim(SEQUENCE_DIM, max=loaded.facts.max_positions)
    with torch.no_grad():
        program = torch.onnx.export(wrapper, args, dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
                                    input_names=names, output_names=[LAST_HIDDEN_STATE, SENTENCE_EMBEDDING],
                                    opset_version=opset, dynamo=True, optimize=False, verbose=False)
    model = program.model
    CleanupPass()(model)
    for value in (*model.graph.inputs, *model.graph.outputs):
        dims = (BATCH_DIM, SEQUENCE_DIM, None)[: len(value.shape)] if value.name != SENTENCE_EMBEDDING \
            else (BATCH_DIM, None)
        value.shape = ir.Shape([dim if name is None else name for dim, name in zip(value.shape, dims)])
    name_weights(model.graph)
    drop_trace_metadata(model.graph)
    return model


def encoder_parity(model_path: str, loaded: LoadedEncoder) -> dict[str, Any]:
    """The exported graph against torch on three texts of different lengths (padded batch)."""
    batch = loaded.tokenizer(list(PARITY_TEXTS), padding=True, return_tensors="np")
    names = input_names(loaded.facts)
    feeds = {name: batch[name].astype(np.int64) if name in batch else np.zeros_like(batch[INPUT_IDS], np.int64)
             for name in names}
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    hidden, embedding = session.run([LAST_HIDDEN_STATE, SENTENCE_EMBEDDING], feeds)
    with torch.no_grad():
        extra = {TOKEN_TYPE_IDS: torch.from_numpy(feeds[TOKEN_TYPE_IDS])} if TOKEN_TYPE_IDS in feeds else {}
        reference = loaded.model(input_ids=torch.from_numpy(feeds[INPUT_IDS]),
                                 attention_mask=torch.from_numpy(feeds[ATTENTION_MASK]), **extra)
    expected_hidden = reference.last_hidden_state.numpy()
    mask = feeds[ATTENTION_MASK].astype(bool)
    expected = pooled_numpy(expected_hidden, mask, loaded.facts)
    cosine = (embedding * expected).sum(-1) / np.linalg.norm(embedding, axis=-1) / np.linalg.norm(expected, axis=-1)
    hidden_diff = float(np.abs(hidden - expected_hidden)[mask].max())
    worst = float(cosine.min())
    return {"texts": len(PARITY_TEXTS), "min_embedding_cosine": worst, "max_abs_hidden_diff": hidden_diff,
            "cosine_tolerance": COSINE_TOLERANCE, "hidden_tolerance": HIDDEN_TOLERANCE,
            "passed": worst >= COSINE_TOLERANCE and hidden_diff <= HIDDEN_TOLERANCE}


def pooled_numpy(hidden: np.ndarray, mask: np.ndarray, facts: EncoderFacts) -> np.ndarray:
    """Sentence-transformers' pooling (and normalisation) in numpy: the reference the graph must match."""
    weights = mask[..., None].astype(hidden.dtype)
    if facts.pooling == "cls":
        pooled = hidden[:, 0]
    elif facts.pooling == "max":
        pooled = np.where(weights > 0, hidden, -np.inf).max(axis=1)
    else:
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    if facts.normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled
