"""Closed-form compensation: the projection after pruned channels, refit by least squares, loses less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from onnxforge.folder import read_manifest
from onnxforge.passes.base import set_model_facts
from onnxforge.passes.calibration import Calibration, CalibrationSettings
from onnxforge.passes.prune.compensation import refit
from onnxforge.passes.prune.projections import residual_stream
from onnxforge.passes.prune.sparsify import sparse_mask, sparsegpt
from onnxforge.runtime.decoder import Decoder
from tests.passes.helpers import run_recipe

SAMPLES, TOKENS = 16, 64  # 1,024 calibration tokens for 128 FFN channels
CALIBRATION = f"[calibration]\nsamples = {SAMPLES}\nmax_tokens = {TOKENS}\n\n"


def _calibration_logits(folder: Path, source: Path) -> np.ndarray:
    """Logits of the calibration rows the passes were fit on (the source's tokenizer, same settings)."""
    decoder = Decoder(folder)
    rows = Calibration.from_folder(source, CalibrationSettings(samples=SAMPLES, max_tokens=TOKENS)).rows
    ids = np.stack(rows).astype(np.int64)
    positions = np.broadcast_to(np.arange(TOKENS), ids.shape).astype(np.int64)
    return decoder.forward(ids, np.ones_like(ids), positions, decoder.empty_past(len(rows)))[0]


def _correlated_activations(tokens: int = 2000, channels: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((tokens, 12)) @ rng.standard_normal((12, channels)) + 0.1 * rng.standard_normal(
        (tokens, channels))


def test_refit_is_exact_when_nothing_is_removed() -> None:
    activations = _correlated_activations()
    weight = np.random.default_rng(1).standard_normal((48, 16)).astype(np.float32)
    np.testing.assert_array_equal(refit(weight, np.arange(48), activations.T @ activations), weight)


def test_refit_lowers_the_output_error_on_the_activations_it_was_fit_on() -> None:
    activations = _correlated_activations()
    weight = np.random.default_rng(1).standard_normal((48, 16)).astype(np.float32)
    kept = np.sort(np.random.default_rng(2).choice(48, size=36, replace=False))
    target = activations @ weight
    sliced = np.linalg.norm(activations[:, kept] @ weight[kept] - target)
    refitted = np.linalg.norm(activations[:, kept] @ refit(weight, kept, activations.T @ activations) - target)
    assert refitted < 0.2 * sliced  # the kept channels span most of what the removed ones carried


@pytest.mark.parametrize("recipe", ['name = "prune-ffn"\nratio = 0.5', 'name = "prune-heads"\nratio = 0.5'],
                         ids=["ffn", "heads"])
def test_the_compensated_model_is_closer_to_the_original(export_tiny, tmp_path: Path, recipe: str) -> None:  # noqa: ANN001
    """On the calibration text it was fit on (a tiny random model does not generalise from 1,024 tokens)."""
    source = export_tiny("llama")
    original, errors = _calibration_logits(source, source), {}
    for compensate in ("true", "false"):
        out = tmp_path / compensate
        manifest = run_recipe(source, out, f"{CALIBRATION}[[passes]]\n{recipe}\ncompensate = {compensate}")
        assert manifest["passes"][-1]["parameters_after"] < manifest["passes"][-1]["parameters_before"]
        errors[compensate] = float(np.abs(_calibration_logits(out, source) - original).mean())
    assert errors["true"] < 0.9 * errors["false"]


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_sparsegpt_keeps_the_pattern_and_loses_less_than_zeroing(pattern: str) -> None:
    activations = _correlated_activations(channels=256)
    weight = np.random.default_rng(1).standard_normal((256, 16)).astype(np.float32)
    gram = activations.T @ activations
    sparse = sparsegpt(weight, gram, pattern, 0.5)
    if pattern == "2:4":
        assert ((sparse.reshape(64, 4, 16) != 0).sum(axis=1) == 2).all()
    else:  # half of every output column within each block of 128 input rows
        assert ((sparse.reshape(2, 128, 16) != 0).sum(axis=1) == 64).all()
    norms = np.sqrt(np.diag(gram))
    zeroed = np.where(sparse_mask(np.abs(weight) * norms[:, None], pattern, 0.5), weight, 0)  # Wanda
    target = activations @ weight
    assert np.linalg.norm(activations @ sparse - target) < 0.5 * np.linalg.norm(activations @ zeroed - target)


def test_sparsegpt_makes_the_sparse_model_closer_to_the_original(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = export_tiny("llama")
    original, errors = _calibration_logits(source, source), {}
    for method in ("mask", "sparsegpt"):
        manifest = run_recipe(source, tmp_path / method,
                              f'{CALIBRATION}[[passes]]\nname = "sparsify"\nratio = 0.5\nmethod = "{method}"')
        record = manifest["passes"][-1]
        assert record["nonzero_after"] < 0.6 * record["nonzero_before"]
        errors[method] = float(np.abs(_calibration_logits(tmp_path / method, source) - original).mean())
    assert errors["sparsegpt"] < 0.9 * errors["mask"]


def test_a_dropped_layer_can_leave_its_mean_update_behind(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = export_tiny("llama")
    manifest = run_recipe(source, tmp_path / "m",
                          f'{CALIBRATION}[[passes]]\nname = "drop-layers"\nlayers = [0]\ncompensate = true')
    assert manifest["passes"][-1]["compensated"] and manifest["architecture"]["num_layers"] == 1
    model = ir.external_data.load_to_model(ir.load(tmp_path / "m" / "model.onnx"))
    [constant] = [v for name, v in model.graph.initializers.items() if name.endswith("/mean_update")]
    original = ir.external_data.load_to_model(ir.load(source / "model.onnx"))
    set_model_facts(original, read_manifest(source)["architecture"])
    entering, leaving = residual_stream(original, 0)
    calibration = Calibration.from_folder(source, CalibrationSettings(samples=SAMPLES, max_tokens=TOKENS))
    updates: list[np.ndarray] = []
    calibration.run(original, [entering, leaving], lambda arrays: updates.append((arrays[1] - arrays[0])[0]), "test")
    expected = np.concatenate(updates).mean(axis=0)
    np.testing.assert_allclose(constant.const_value.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_too_little_calibration_text_slices_instead_of_refitting(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source, few = export_tiny("llama"), "[calibration]\nsamples = 2\nmax_tokens = 32\n\n"  # 64 tokens, 64 channels
    for compensate in ("true", "false"):
        manifest = run_recipe(source, tmp_path / compensate,
                              f'{few}[[passes]]\nname = "prune-ffn"\nratio = 0.5\ncompensate = {compensate}')
        assert manifest["passes"][-1]["refit"] is False
    np.testing.assert_array_equal(_calibration_logits(tmp_path / "true", source),
                                  _calibration_logits(tmp_path / "false", source))
