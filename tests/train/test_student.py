"""The torch student rebuilt from a compressed folder reproduces the folder's graph; other folders are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxforge.errors import BadInput
from onnxforge.models import load_source
from onnxforge.train.student import load_student, rebuild_error

from ..passes.helpers import run_recipe
from .conftest import STUDENT_RECIPES

IDS = np.arange(3, 43)


@pytest.mark.parametrize("recipe", list(STUDENT_RECIPES))
def test_the_rebuilt_student_gives_the_folders_logits(tiny_student, recipe: str) -> None:  # noqa: ANN001
    folder = tiny_student(recipe)
    student = load_student(folder, load_source("tiny:llama"))
    assert rebuild_error(student, folder, IDS) < 1e-5
    dropped = "drop" in recipe
    assert len(student.teacher_layers) == (1 if dropped else 2)
    assert bool(student.masks) == (recipe == "sparsify")


def test_pruned_widths_and_factors_become_the_modules_shapes(tiny_student) -> None:  # noqa: ANN001
    student = load_student(tiny_student("ffn+drop+lowrank"), load_source("tiny:llama")).model
    layer = student.model.layers[0]
    assert layer.mlp.gate_proj.lowrank_b.shape[1] == 96  # 128 channels, a quarter pruned
    assert layer.self_attn.q_proj.lowrank_a.shape[0] == 64


def test_a_student_of_another_teacher_is_refused(tiny_student) -> None:  # noqa: ANN001
    with pytest.raises(BadInput, match="not derived from the teacher"):
        load_student(tiny_student("prune-ffn"), load_source("tiny:gpt2"))


def test_a_fused_student_is_refused(tiny_student, tmp_path: Path) -> None:  # noqa: ANN001
    run_recipe(tiny_student("prune-ffn"), tmp_path / "fused", '[[passes]]\nname = "fuse"\n')
    with pytest.raises(BadInput, match="ran fuse"):
        load_student(tmp_path / "fused", load_source("tiny:llama"))
