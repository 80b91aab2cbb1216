"""Distillation losses: the teacher's next-token distribution, its sentence embedding and its residual stream."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Forward KL(teacher ‖ student) of the softened distributions per token, times T² (Hinton et al.), averaged."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    return per_token.mean() * temperature**2


def stream_loss(outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of ‖output - target‖² / ‖target‖²: each layer's error relative to the stream's size."""
    errors = [((o.float() - t.float()) ** 2).mean() / (t.float() ** 2).mean() for o, t in zip(outputs, targets)]
    return torch.stack(errors).mean()


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine between the student's and the teacher's sentence embeddings, averaged over the batch."""
    return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()
