"""Slow: a short distillation of the default model's prune-ffn-25 student lowers its perplexity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onnxforge.cli import main
from onnxforge.eval.run import evaluate_folder

pytestmark = pytest.mark.slow


def _perplexity(folder: Path) -> float:
    return evaluate_folder(folder, "wikitext2", 10, threads=2, token_budget=2048)["perplexity"]


def test_a_short_distillation_lowers_the_perplexity_of_a_pruned_model(
    default_export: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder, _ = default_export
    student, out = tmp_path / "prune-ffn-25", tmp_path / "distilled"
    assert main(["compress", str(folder), str(student), "--recipe", "prune-ffn-25"]) == 0
    assert main(["distill", "smollm2-135m", str(student), str(out), "--tokens", "8192"]) == 0
    record = json.loads((out / "onnxforge.json").read_text())["passes"][-1]
    assert record["tokens_trained"] == 8192 and record["text_passages_dropped"] == 0
    before, after = _perplexity(student), _perplexity(out)
    assert after < 0.97 * before, (before, after)
