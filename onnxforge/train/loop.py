"""The training loop: a block-wise stage, then end-to-end distillation, with checkpoints that resume bit for bit.

Stage `blockwise`: every student layer is fed the teacher's stream entering its teacher layer and
learns to output the stream entering the next kept one (relative squared error); layers do not
see each other's errors, and the vocabulary projection is never computed, so a step is cheap.
Stage `kd`: the whole student against the teacher's softened next-token distribution (forward
KL), plus the stream loss when `stream_weight` > 0. Each stage has its own AdamW, linear warm-up
and cosine decay to `min_lr_ratio`, and gradient clipping. Batches are drawn from a permutation
fixed by the seed and the step number, so a run resumed from a checkpoint draws the same batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parametrize

from onnxforge.train.checkpoint import load_checkpoint, save_checkpoint
from onnxforge.train.losses import kd_loss, stream_loss
from onnxforge.train.streams import decoder_layers, fed_streams, recorded_streams, targets
from onnxforge.train.student import Student

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainSettings:
    """How much to train, on what rows, and how."""

    tokens: int = 100_000
    blockwise_share: float = 0.25
    sequence_length: int = 256
    batch_rows: int = 4
    learning_rate: float = 1e-4
    blockwise_learning_rate: float = 1e-4
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    temperature: float = 1.0
    stream_weight: float = 0.0
    precision: str = "fp32"
    seed: int = 0
    quantize: str | None = None

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one batch."""
        return self.sequence_length * self.batch_rows

    def stage_steps(self) -> list[tuple[str, int]]:
        """(stage, optimiser steps) in order; a stage given no tokens is left out."""
        steps = max(1, round(self.tokens / self.tokens_per_step))
        blockwise = round(steps * self.blockwise_share)
        return [(name, n) for name, n in (("blockwise", blockwise), ("kd", steps - blockwise)) if n > 0]


@dataclass
class Progress:
    """Where training stands: the stage, the step within it, and every step's figures so far."""

    stage: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def tokens(self, settings: TrainSettings) -> int:
        """Training tokens seen so far."""
        return len(self.history) * settings.tokens_per_step


class Trainer:
    """Train `student` against `teacher` on token `rows` [n, sequence_length]."""

    def __init__(self, teacher: torch.nn.Module, student: Student, rows: np.ndarray, settings: TrainSettings) -> None:
        self.teacher, self.student, self.rows, self.settings = teacher.eval(), student, rows, settings
        self.stages = settings.stage_steps()
        self.progress = Progress()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)

    @property
    def total_steps(self) -> int:
        """Optimiser steps over every stage."""
        return sum(steps for _, steps in self.stages)

    @property
    def steps_done(self) -> int:
        """Optimiser steps taken over every stage."""
        return len(self.progress.history)

    def resume(self, folder: Path) -> None:
        """Continue from the checkpoint in `folder` (parameters, optimiser, schedule, history)."""
        optimizer, state = load_checkpoint(folder, self.student.model)
        self.progress = Progress(state["stage"], state["step"], state["seconds"], state["history"])
        if self.progress.stage < len(self.stages):
            self._start_stage()
            self.optimizer.load_state_dict(optimizer["optimizer"])
            self.scheduler.load_state_dict(optimizer["scheduler"])

    def checkpoint(self, folder: Path, state: dict[str, Any]) -> None:
        """Save everything `resume` needs into `folder`, plus `state` (what the run was asked to do)."""
        optimizer = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()} \
            if self.optimizer else {}
        save_checkpoint(folder, self.student.model, optimizer, {**state, **asdict(self.progress)})

    def steps(self, deadline: float | None = None) -> Iterator[dict[str, Any]]:
        """Take the remaining steps one by one, yielding each step's figures; stop at `deadline` (perf_counter)."""
        while self.progress.stage < len(self.stages):
            if self.optimizer is None:
                self._start_stage()
            name, count = self.stages[self.progress.stage]
            while self.progress.step < count:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                yield self._one_step(name)
            self.progress.stage, self.progress.step, self.optimizer = self.progress.stage + 1, 0, None

    def _start_stage(self) -> None:
        name, count = self.stages[self.progress.stage]
        settings = self.settings
        parameters = self._trainable(name)
        rate = settings.blockwise_learning_rate if name == "blockwise" else settings.learning_rate
        self.optimizer = torch.optim.AdamW(parameters, lr=rate, betas=(0.9, 0.95), weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(count, settings.warmup, settings.min_lr_ratio))

    def _trainable(self, stage: str) -> list[torch.nn.Parameter]:
        """The decoder layers' parameters (blockwise), or every parameter but the embedding and head (kd)."""
        model = self.student.model
        layers = {id(p) for p in decoder_layers(model).parameters()}
        frozen = {id(p) for module in (model.get_input_embeddings(), model.get_output_embeddings())
                  if module is not None for p in module.parameters()}
        chosen = [p for p in model.parameters() if (id(p) in layers if stage == "blockwise" else id(p) not in frozen)]
        trained = {id(p) for p in chosen}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in trained)
        return chosen

    def _one_step(self, stage: str) -> dict[str, Any]:
        start = time.perf_counter()
        ids = torch.from_numpy(self._batch(self.steps_done))
        model = self.student.model.train()
        loss_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]] = \
            self._blockwise_losses if stage == "blockwise" else self._kd_losses
        with parametrize.cached():  # a fake-quantised weight is computed once per step, not per use
            losses = loss_fn(ids)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                              self.settings.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.student.keep_sparsity()
        model.eval()
        self.progress.step += 1
        self.progress.seconds += time.perf_counter() - start
        record = {"stage": stage, "step": self.progress.step, "tokens": (self.steps_done + 1) * ids.numel(),
                  "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(norm),
                  "seconds": round(self.progress.seconds, 3)} | {k: float(v.detach()) for k, v in losses.items()}
        self.progress.history.append(record)
        return record

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.settings.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def _teacher(self, ids: torch.Tensor, logits: bool) -> tuple[Any, list[torch.Tensor], list[torch.Tensor]]:
        """The teacher's output (or None), the stream entering each student layer's teacher layer, and the targets."""
        with torch.no_grad(), self._autocast(), recorded_streams(self.teacher) as (entering, leaving):
            output = self._teacher_output(ids) if logits else self.teacher.base_model(input_ids=ids)
        inputs = [entering[t] for t in self.student.teacher_layers]
        return (output if logits else None), inputs, targets(entering, leaving, self.student.teacher_layers)

    def _teacher_output(self, ids: torch.Tensor) -> torch.Tensor:
        """What the end-to-end loss compares: the teacher's logits."""
        return self.teacher(input_ids=ids).logits

    def _output_loss(self, ids: torch.Tensor, wanted: torch.Tensor) -> tuple[str, torch.Tensor]:
        """(name, loss) of the student's output against the teacher's: forward KL of the next-token distributions."""
        logits = self.student.model(input_ids=ids).logits
        return "kd", kd_loss(logits, wanted, self.settings.temperature)

    def _blockwise_losses(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        _, inputs, wanted = self._teacher(ids, logits=False)
        with self._autocast(), fed_streams(self.student.model, inputs) as outputs:
            self.student.model.base_model(input_ids=ids)
        loss = stream_loss(outputs, wanted)
        return {"loss": loss, "stream": loss.detach()}

    def _kd_losses(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher_output, _, wanted = self._teacher(ids, logits=True)
        with self._autocast(), recorded_streams(self.student.model) as (_, outputs):
            name, loss = self._output_loss(ids, teacher_output)
        losses = {name: loss.detach()}
        if self.settings.stream_weight > 0:
            stream = stream_loss(outputs, wanted)
            losses["stream"] = stream.detach()
            loss = loss + self.settings.stream_weight * stream
        return {"loss": loss, **losses}

    def _batch(self, index: int) -> np.ndarray:
        """Batch `index`: rows of the permutation of epoch index // batches per epoch (seeded)."""
        rows, per_batch = len(self.rows), self.settings.batch_rows
        start = index * per_batch
        chosen = []
        for position in range(start, start + per_batch):
            epoch, offset = divmod(position, rows)
            chosen.append(np.random.default_rng([self.settings.seed, epoch]).permutation(rows)[offset])
        return self.rows[chosen]


class WarmupCosine:
    """The learning-rate factor: linear warm-up over `warmup` of the steps, then cosine decay to `floor`."""

    def __init__(self, steps: int, warmup: float, floor: float) -> None:
        self.steps, self.warmup_steps, self.floor = steps, max(1, round(warmup * steps)), floor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        done = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
