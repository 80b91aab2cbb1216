"""FFN pruning: removing channels that contribute nothing is exact; tensors and files really shrink."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxforge.passes.prune.ffn import PruneFfnConfig, choose_kept
from tests.passes.helpers import batch_logits, edited_copy, greedy_with_cache, greedy_without_cache, run_recipe

LAYERS, INTERMEDIATE, HIDDEN = 2, 128, 64


def _dead_channels(layer: int) -> np.ndarray:
    return np.arange(layer, INTERMEDIATE, 4)  # a quarter of the channels, different in each layer


def _silence_channels(arrays: dict[str, np.ndarray]) -> None:
    for layer in range(LAYERS):
        arrays[f"model.layers.{layer}.mlp.down_proj.weight"][_dead_channels(layer), :] = 0.0


@pytest.mark.parametrize("scoring", ["magnitude", "activation"])
def test_pruning_channels_that_contribute_nothing_is_exact(export_tiny, tmp_path: Path, scoring: str) -> None:  # noqa: ANN001
    source = edited_copy(export_tiny("llama"), tmp_path / "silenced", _silence_channels)
    manifest = run_recipe(
        source, tmp_path / "pruned", f'[[passes]]\nname = "prune-ffn"\nratio = 0.25\nscoring = "{scoring}"'
    )
    np.testing.assert_allclose(batch_logits(tmp_path / "pruned"), batch_logits(source), atol=1e-5)
    record = manifest["passes"][-1]
    assert record["channels_removed"] == [32, 32]
    assert record["parameters_before"] - record["parameters_after"] == LAYERS * 32 * 3 * HIDDEN
    sizes = [
        json.loads((folder / "onnxforge.json").read_text())["files_bytes"]["model.onnx_data"]
        for folder in (source, tmp_path / "pruned")
    ]
    assert sizes[1] <= sizes[0] - LAYERS * 32 * 3 * HIDDEN * 4


def test_pruned_model_decodes_with_its_cache_as_without(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    run_recipe(export_tiny("llama"), tmp_path / "pruned", '[[passes]]\nname = "prune-ffn"\nratio = 0.5')
    assert greedy_with_cache(tmp_path / "pruned") == greedy_without_cache(tmp_path / "pruned")


def test_global_scope_prunes_the_weakest_layer_most() -> None:
    scores = [np.linspace(1, 2, 64), np.linspace(0.1, 0.2, 64)]  # layer 1 is ten times weaker
    kept = choose_kept(scores, PruneFfnConfig(ratio=0.5, scope="global", multiple_of=8, max_layer_ratio=0.75))
    assert [len(k) for k in kept] == [64, 16]  # all removals in layer 1, capped at 75 %
    assert (kept[1] == np.arange(48, 64)).all()  # the highest scores are the ones kept


def test_unsupported_architecture_is_one_clear_error(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    from onnxforge.errors import BadInput

    with pytest.raises(BadInput, match="prune-ffn supports llama, mistral, qwen2.* this model is gpt2"):
        run_recipe(export_tiny("gpt2"), tmp_path / "out", '[[passes]]\nname = "prune-ffn"')
    assert not (tmp_path / "out").exists()


def test_structural_pass_after_fuse_is_refused_with_advice(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    from onnxforge.errors import BadInput

    recipe = '[[passes]]\nname = "fuse"\n\n[[passes]]\nname = "prune-ffn"'
    with pytest.raises(BadInput, match=r"pass 2 \(prune-ffn\): prune-ffn must run before fuse"):
        run_recipe(export_tiny("llama"), tmp_path / "out", recipe)
    assert not (tmp_path / "out").exists()


def test_compress_command_refuses_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from onnxforge.cli import main

    assert main(["compress", str(tmp_path), str(tmp_path / "out"), "--recipe", "fuse"]) == 2
    assert "is not an onnxforge model folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
