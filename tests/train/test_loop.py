"""The training loop: the KD loss falls, a resumed run continues with the same losses, sparsity stays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from onnxforge.folder import read_tokenizer
from onnxforge.models import load_source
from onnxforge.train.checkpoint import load_checkpoint
from onnxforge.train.data import token_rows, training_text
from onnxforge.train.loop import Trainer, TrainSettings
from onnxforge.train.losses import kd_loss
from onnxforge.train.student import load_student

SETTINGS = TrainSettings(tokens=20 * 4 * 32, blockwise_share=0.0, sequence_length=32, learning_rate=3e-3)


def _trainer(folder: Path, settings: TrainSettings = SETTINGS) -> Trainer:
    teacher = load_source("tiny:llama")
    rows = token_rows(read_tokenizer(folder), training_text().passages[:60], settings.sequence_length)
    return Trainer(teacher.model, load_student(folder, teacher), rows, settings)


def _held_out_kd(trainer: Trainer) -> float:
    ids = torch.from_numpy(trainer.rows[-8:])
    with torch.no_grad():
        return float(kd_loss(trainer.student.model(input_ids=ids).logits, trainer.teacher(input_ids=ids).logits, 1.0))


def test_the_kd_loss_falls_over_twenty_steps(tiny_student) -> None:  # noqa: ANN001
    trainer = _trainer(tiny_student("ffn+drop+lowrank"))  # a random model pruned mildly barely differs from it
    before = _held_out_kd(trainer)
    records = list(trainer.steps())
    assert len(records) == 20 and {r["stage"] for r in records} == {"kd"}
    assert _held_out_kd(trainer) < 0.8 * before


def test_the_blockwise_stage_lowers_the_stream_error(tiny_student) -> None:  # noqa: ANN001
    settings = dataclasses.replace(SETTINGS, blockwise_share=1.0, blockwise_learning_rate=3e-3)
    records = list(_trainer(tiny_student("ffn+drop+lowrank"), settings).steps())
    assert {r["stage"] for r in records} == {"blockwise"}
    assert np.mean([r["stream"] for r in records[-3:]]) < 0.8 * np.mean([r["stream"] for r in records[:3]])


def test_a_resumed_run_takes_the_same_steps(tiny_student, tmp_path: Path) -> None:  # noqa: ANN001
    settings = dataclasses.replace(SETTINGS, tokens=12 * 4 * 32, blockwise_share=0.25, stream_weight=1.0)
    folder = tiny_student("ffn+drop+lowrank")
    straight = [r["loss"] for r in _trainer(folder, settings).steps()]
    first = _trainer(folder, settings)
    steps = first.steps()
    for _ in range(5):  # into the kd stage (3 block-wise steps), with its optimiser state
        next(steps)
    first.checkpoint(tmp_path / "checkpoint", {})
    resumed = _trainer(folder, settings)
    resumed.resume(tmp_path / "checkpoint")
    assert [r["loss"] for r in resumed.steps()] == straight[5:]
    assert len(resumed.progress.history) == 12


def test_a_sparse_student_keeps_its_zeros(tiny_student, tmp_path: Path) -> None:  # noqa: ANN001
    trainer = _trainer(tiny_student("sparsify"), dataclasses.replace(SETTINGS, tokens=3 * 4 * 32))
    list(trainer.steps())
    parameters = dict(trainer.student.model.named_parameters())
    for name, mask in trainer.student.masks.items():
        assert torch.equal(parameters[name] * (1 - mask), torch.zeros_like(mask))
    trainer.checkpoint(tmp_path / "checkpoint", {})
    assert len(load_checkpoint(tmp_path / "checkpoint", trainer.student.model)[1]["history"]) == 3
