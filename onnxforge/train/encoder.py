"""Distilling encoders: a layer-dropped or pruned BERT-family folder trained towards its teacher's sentence embeddings.

The two stages of `loop.py` with an encoder's end-to-end loss: block-wise, each student layer
learns to output the stream entering the next kept teacher layer; end to end, the student's
pooled sentence embedding is pulled to the teacher's (1 - cosine), plus the layer streams when
`stream_weight` > 0. Training rows are windows of the shipped training text between the
tokenizer's own first and last special tokens ([CLS] ... [SEP]), every position attended. The
trained student goes back through the encoder exporter and is checked against itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from tokenizers import Tokenizer

from onnxforge.exporter.encoder import EncoderWithPooling, encoder_parity, trace_encoder
from onnxforge.folder import (
    ATTENTION_MASK,
    EXTERNAL_DATA_FILE,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    MODEL_FILE,
    TOKEN_TYPE_IDS,
)
from onnxforge.models.encoders import EncoderFacts, LoadedEncoder
from onnxforge.train.data import token_rows
from onnxforge.train.loop import Trainer, TrainSettings
from onnxforge.train.losses import embedding_loss
from onnxforge.train.student import Student


def student_facts(student: Student) -> EncoderFacts:
    """The student's encoder facts, from its folder's record (its layer count and widths)."""
    recorded = student.manifest["architecture"]
    return EncoderFacts(**{f.name: recorded[f.name] for f in dataclasses.fields(EncoderFacts) if f.name in recorded})


class EncoderTrainer(Trainer):
    """`Trainer` whose end-to-end loss compares pooled sentence embeddings instead of next-token distributions."""

    def __init__(self, teacher: LoadedEncoder, student: Student, rows: np.ndarray, settings: TrainSettings) -> None:
        super().__init__(teacher.model, student, rows, settings)
        self.teacher_pooled = EncoderWithPooling(teacher.model, teacher.facts).eval()
        self.student_pooled = EncoderWithPooling(student.model, student_facts(student))

    def _teacher_output(self, ids: torch.Tensor) -> torch.Tensor:
        return self.teacher_pooled(ids, torch.ones_like(ids))[1]

    def _output_loss(self, ids: torch.Tensor, wanted: torch.Tensor) -> tuple[str, torch.Tensor]:
        return "embedding", embedding_loss(self.student_pooled(ids, torch.ones_like(ids))[1], wanted)


def encoder_rows(tokenizer: Tokenizer, passages: list[str], length: int) -> np.ndarray:
    """Rows [n, length]: the tokenizer's opening special token, `length - 2` text tokens, its closing one."""
    specials = tokenizer.encode("").ids  # [CLS] [SEP] for BERT, <s> </s> for RoBERTa
    if len(specials) != 2:
        raise ValueError(f"the encoder's tokenizer wraps a text in {len(specials)} special tokens, not 2")
    body = token_rows(tokenizer, passages, length - 2)
    column = np.ones((len(body), 1), np.int64)
    return np.concatenate([column * specials[0], body, column * specials[1]], axis=1)


def encoder_rebuild_error(student: Student, folder: Path, ids: np.ndarray) -> float:
    """Max |Δ last_hidden_state| between the torch student and the folder's graph in ONNX Runtime on one row."""
    from onnxforge.runtime.session import SessionSettings, open_session

    session = open_session(folder, SessionSettings())
    row = ids[None, :].astype(np.int64)
    feeds = {INPUT_IDS: row, ATTENTION_MASK: np.ones_like(row)}
    if TOKEN_TYPE_IDS in {value.name for value in session.get_inputs()}:
        feeds[TOKEN_TYPE_IDS] = np.zeros_like(row)
    expected = session.run([LAST_HIDDEN_STATE], feeds)[0]
    with torch.no_grad():
        got = student.model(input_ids=torch.from_numpy(row), attention_mask=torch.ones_like(torch.from_numpy(row)))
    return float(np.abs(expected - got.last_hidden_state.numpy()).max())


def export_encoder_student(student: Student, teacher: LoadedEncoder, source: Path, stage: Path,
                           opset: int) -> tuple[ir.Model, EncoderFacts, dict[str, Any]]:
    """Trace the trained student with its pooling into `stage`; (graph, facts, parity against the torch student)."""
    facts = student_facts(student)
    loaded = LoadedEncoder(student.model.eval(), teacher.tokenizer, facts, str(source), "student")
    model = trace_encoder(loaded, opset)
    ir.save(model, stage / MODEL_FILE, external_data=EXTERNAL_DATA_FILE)
    return model, facts, encoder_parity(str(stage / MODEL_FILE), loaded)
