"""Fixtures of the training tests: tiny teachers and students compressed from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ..passes.helpers import run_recipe

STUDENT_RECIPES = {
    "prune-ffn": '[[passes]]\nname = "prune-ffn"\nratio = 0.25\n',
    "drop-layers": '[[passes]]\nname = "drop-layers"\ncount = 1\n',
    "prune-heads": '[[passes]]\nname = "prune-heads"\nratio = 0.5\n',
    "lowrank": '[[passes]]\nname = "lowrank"\nkeep = 0.5\n',
    "sparsify": '[[passes]]\nname = "sparsify"\nratio = 0.5\n',
    "ffn+drop+lowrank": '[[passes]]\nname = "prune-ffn"\nratio = 0.25\n[[passes]]\nname = "drop-layers"\n'
                        'count = 1\n[[passes]]\nname = "lowrank"\nkeep = 0.5\n',
}


@pytest.fixture(scope="session")
def tiny_student(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tiny_student(RECIPE) -> a folder compressed from the tiny llama export by STUDENT_RECIPES[RECIPE]."""
    root = tmp_path_factory.mktemp("students")
    made: dict[str, Path] = {}

    def student(recipe: str) -> Path:
        if recipe not in made:
            made[recipe] = root / recipe.replace("+", "_")
            run_recipe(export_tiny("llama"), made[recipe], STUDENT_RECIPES[recipe])
        return made[recipe]

    return student
