"""Quantisation-aware training: the torch grid is the quantisation pass's grid, bit for bit, end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxforge.passes.quantize.blockwise import quantize
from onnxforge.passes.quantize.weight_matmuls import weight_matmuls
from onnxforge.train.fake_quant import add_fake_quant, fake_quantize, quantized_weights, remove_fake_quant

from ..passes.helpers import batch_logits, restored_weight, run_recipe
from .test_distill_cli import TINY, _run


@pytest.mark.parametrize("k", [64, 80, 576])
def test_fake_quant_is_the_passes_grid_bit_for_bit(k: int) -> None:
    weight = np.random.default_rng(k).normal(0.0, 0.05, size=(k, 24)).astype(np.float32)
    weight[:, 3] = 0.01  # a constant column: every block has a zero range
    weight[:, 5] = np.abs(weight[:, 5])  # all positive: the zero point clips at 0
    torch_grid = fake_quantize(torch.from_numpy(weight)).numpy()
    assert np.array_equal(torch_grid, quantize(weight, 4, 32, False).dequantize())  # K = 80 is padded


def test_gradients_pass_straight_through_the_rounding(tiny_student: Callable[[str], Path]) -> None:
    from onnxforge.models import load_source
    from onnxforge.train.student import load_student

    student = load_student(tiny_student("prune-ffn"), load_source("tiny:llama"))
    linear = student.model.model.layers[0].mlp.down_proj
    assert add_fake_quant(student.model) == len(quantized_weights(student.model))
    latent = linear.parametrizations.weight.original
    upstream = torch.randn(3, linear.out_features)
    x = torch.randn(3, linear.in_features)
    (linear(x) * upstream).sum().backward()
    np.testing.assert_allclose(latent.grad.numpy(), (upstream.T @ x).numpy(), rtol=1e-5, atol=1e-6)
    seen = linear.weight.detach()
    assert np.array_equal(seen.numpy(), fake_quantize(latent.detach().T).T.numpy()) and not torch.equal(seen, latent)
    remove_fake_quant(student.model)
    assert torch.equal(linear.weight.detach(), latent.detach())  # the latent weights are what stays


def test_trained_codes_round_trip_through_the_quantisation_pass(tiny_student: Callable[[str], Path]) -> None:
    from onnxforge.exporter.trace import trace_to_onnx
    from onnxforge.models import facts_from_config, load_source
    from onnxforge.passes.base import open_pass_log, set_model_facts
    from onnxforge.passes.quantize.weights import QuantizeWeightsConfig
    from onnxforge.passes.registry import make_pass
    from onnxforge.train.student import load_student

    student = load_student(tiny_student("prune-ffn"), load_source("tiny:llama"))
    add_fake_quant(student.model)
    with torch.no_grad():  # stands in for training: the latent weights move off the grid they started on
        for parameter in student.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    seen = {f"{name}.weight": module.weight.detach().T.numpy().copy()
            for name, module in student.model.named_modules() if isinstance(module, torch.nn.Linear)}
    remove_fake_quant(student.model)
    facts = facts_from_config(student.model.config)
    model = trace_to_onnx(student.model, facts)
    set_model_facts(model, facts.to_json())
    open_pass_log(model)
    make_pass("quantize-weights", QuantizeWeightsConfig(), None)(model)  # the int4 recipe's grid
    assert not weight_matmuls(model.graph)
    for name, grid in seen.items():
        assert np.array_equal(restored_weight(model, name, 4, grid.shape[0]), grid), name


def test_quantisation_aware_training_writes_a_closer_int4_folder(
    export_tiny: Callable[[str], Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from onnxforge.passes.recipe import named_recipes

    source, out = export_tiny("llama"), tmp_path / "qat"
    qat = [*TINY, "--learning-rate", "1e-4", "--quantize", "int4"]  # 1e-3 moves the latent weights too far
    status, err = _run(["distill", "tiny:llama", str(source), str(out), *qat], capfd)
    assert status == 0, err
    manifest = json.loads((out / "onnxforge.json").read_text())
    assert [p["pass"] for p in manifest["passes"]] == ["distill", "cleanup", "fuse", "quantize-weights"]
    distilled = manifest["passes"][0]
    assert distilled["settings"]["quantize"] == "int4" and distilled["parity"]["worst_abs_logits_diff"] < 1e-4
    assert "GatherBlockQuantized" in manifest["passes"][-1]["embedding"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qat"]  # no float folder, no checkpoint left behind
    plain = tmp_path / "plain-int4"
    run_recipe(source, plain, named_recipes()["int4"])
    teacher = batch_logits(source)
    assert np.abs(batch_logits(out) - teacher).mean() < np.abs(batch_logits(plain) - teacher).mean()


def test_a_sparse_student_or_another_grid_is_refused_in_one_line(tiny_student, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    for student, grid, message in [("sparsify", "int4", "is sparsified"), ("prune-ffn", "int3", "--quantize must be")]:
        status, err = _run(["distill", "tiny:llama", str(tiny_student(student)), str(tmp_path / "o"), *TINY,
                            "--quantize", grid], capfd)
        assert status == 2 and len(err) == 1 and message in err[0]
        assert not (tmp_path / "o").exists()
