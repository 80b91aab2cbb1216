"""What a cache of teacher logits could save: the teacher's share of one distillation step.

Times, on the same batches, the three parts of an end-to-end KD step (`onnxforge distill`'s
default 4 x 256 tokens): the torch teacher's forward pass (what a cache would replace), the same
forward in ONNX Runtime on the teacher's export (what precomputing the cache would cost), and the
student's forward and backward. It also measures how much of the teacher's distribution the top-k
tokens per position hold, what a top-k cache keeps.

    .venv/bin/python benchmarks/teacher_cost.py smollm2-135m /tmp/smol /tmp/prune-ffn-25 --steps 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from onnxforge.eval.scoring import onnx_logits
from onnxforge.folder import read_tokenizer
from onnxforge.models import load_source
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.session import SessionSettings
from onnxforge.train.data import token_rows, training_text
from onnxforge.train.student import load_student


def main() -> None:
    """Time the parts of a KD step; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", help="the teacher source (e.g. smollm2-135m)")
    parser.add_argument("teacher_dir", type=Path, help="the teacher's exported folder (for the ONNX Runtime forward)")
    parser.add_argument("student", type=Path, help="a structurally compressed folder")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    teacher = load_source(args.teacher)
    student = load_student(args.student, teacher)
    rows = token_rows(read_tokenizer(args.student), training_text().passages, 256, limit=4 * (args.steps + 1))
    batches = [torch.from_numpy(rows[4 * i : 4 * i + 4]) for i in range(args.steps + 1)]
    ort_logits = onnx_logits(Decoder(args.teacher_dir, SessionSettings.with_threads(2)))
    figures = {"torch_teacher_s": _median(lambda ids: _teacher(teacher.model, ids), batches),
               "ort_teacher_s": _median(lambda ids: ort_logits(ids.numpy(), np.ones_like(ids.numpy())), batches),
               "student_forward_backward_s": _median(lambda ids: _student_step(student.model, ids), batches)}
    logits = _teacher(teacher.model, batches[0])
    top = torch.softmax(logits, -1).topk(args.top_k, dim=-1).values.sum(-1)
    figures[f"top{args.top_k}_probability_mass_median"] = round(float(top.median()), 4)
    figures[f"top{args.top_k}_probability_mass_p05"] = round(float(top.quantile(0.05)), 4)
    step = figures["torch_teacher_s"] + figures["student_forward_backward_s"]
    figures["teacher_share_of_step"] = round(figures["torch_teacher_s"] / step, 3)
    print(json.dumps(figures, indent=2))


def _median(work, batches: list[torch.Tensor]) -> float:  # noqa: ANN001 - a timed callable
    work(batches[0])  # warm-up
    seconds = []
    for ids in batches[1:]:
        start = time.perf_counter()
        work(ids)
        seconds.append(time.perf_counter() - start)
    return round(float(np.median(seconds)), 3)


def _teacher(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _student_step(model: torch.nn.Module, ids: torch.Tensor) -> None:
    model.train()
    model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
    model.zero_grad(set_to_none=True)
    model.eval()


if __name__ == "__main__":
    main()
