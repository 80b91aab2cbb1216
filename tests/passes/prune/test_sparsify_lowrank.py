"""Sparsity zeroes exactly the pattern asked for; low-rank at full rank is exact, shrinks when it can,
and the activation-aware variant beats plain SVD at equal size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxforge.passes.prune.lowrank import LowRankConfig, activation_scale, factorize, whitening
from onnxforge.passes.prune.sparsify import sparse_mask
from tests.passes.helpers import batch_logits, run_recipe


def _weights(folder: Path) -> dict[str, np.ndarray]:
    model = onnx.load(folder / "model.onnx")
    return {w.name: onnx.numpy_helper.to_array(w) for w in model.graph.initializer}


def test_two_of_four_keeps_exactly_two_of_every_four_inputs_per_output(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    manifest = run_recipe(export_tiny("llama"), tmp_path / "sparse", '[[passes]]\nname = "sparsify"\npattern = "2:4"')
    for name, weight in _weights(tmp_path / "sparse").items():
        if "_proj.weight" in name:
            groups = (weight.reshape(weight.shape[0] // 4, 4, weight.shape[1]) != 0).sum(axis=1)
            assert (groups == 2).all(), name
    record = manifest["passes"][-1]
    assert record["nonzero_after"] == record["nonzero_before"] // 2
    assert record["bytes_after"] == record["bytes_before"]  # dense storage, said so in the record


def test_unstructured_sparsity_removes_the_lowest_scores_of_every_output_column() -> None:
    scores = np.random.default_rng(0).random((64, 8))
    kept = sparse_mask(scores, "unstructured", 0.25)
    assert (kept.sum(axis=0) == 48).all()
    for column in range(8):
        assert scores[~kept[:, column], column].max() < scores[kept[:, column], column].min()


def test_full_rank_factorisation_reproduces_the_outputs(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = export_tiny("llama")
    for scoring in ("activation", "whiten"):
        recipe = f'[[passes]]\nname = "lowrank"\nenergy = 1.0\nonly_if_smaller = false\nscoring = "{scoring}"'
        manifest = run_recipe(source, tmp_path / scoring, recipe)
        assert manifest["passes"][-1]["factorized"] == 14
        np.testing.assert_allclose(batch_logits(tmp_path / scoring), batch_logits(source), atol=1e-4)


def test_factorisation_happens_only_where_it_saves_parameters(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = export_tiny("llama")
    kept_all = run_recipe(source, tmp_path / "energy", '[[passes]]\nname = "lowrank"\nenergy = 1.0')
    assert kept_all["passes"][-1]["factorized"] == 0  # full rank never saves anything
    half = run_recipe(source, tmp_path / "half", '[[passes]]\nname = "lowrank"\nkeep = 0.5\nscoring = "plain"')
    record = half["passes"][-1]
    assert record["factorized"] == 14
    targets = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128)  # per layer: q and o, k and v, gate, up and down
    assert record["parameters_before"] - record["parameters_after"] == pytest.approx(targets / 2, rel=0.05)
    sizes = [(folder / "model.onnx_data").stat().st_size for folder in (source, tmp_path / "half")]
    assert sizes[1] < sizes[0]


def test_activation_aware_beats_plain_svd_at_equal_rank() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((96, 64))
    channel_scale = np.exp(rng.normal(0, 1.5, 96))  # a few input channels carry most of the signal
    x = rng.standard_normal((2000, 96)) * channel_scale
    norms = np.linalg.norm(x, axis=0)
    transforms = {"plain": np.ones(96), "activation": activation_scale(norms, 0.5), "whiten": whitening(x.T @ x)}
    errors = {}
    for scoring, scale in transforms.items():
        a, b = factorize(weight, scale, LowRankConfig(keep=0.3, scoring=scoring))
        errors[scoring] = np.linalg.norm(x @ weight - x @ a @ b)
        assert a.shape[1] == int(0.3 * 96 * 64 / 160)
    assert errors["whiten"] < errors["activation"] < 0.8 * errors["plain"]


def test_lowrank_config_needs_a_budget() -> None:
    with pytest.raises(ValueError, match="set keep .* or energy"):
        LowRankConfig(keep=0.0)
    with pytest.raises(ValueError, match="targets must list projections from q_proj"):
        LowRankConfig(targets=("lm_head",))
