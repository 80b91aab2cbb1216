"""Dropping layers: an identity layer goes first and exactly; the rest is renumbered and still decodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from tests.passes.helpers import batch_logits, edited_copy, greedy_with_cache, greedy_without_cache, run_recipe


def _make_layer_0_an_identity(arrays: dict[str, np.ndarray]) -> None:
    for name in ("self_attn.o_proj", "mlp.down_proj"):
        arrays[f"model.layers.0.{name}.weight"][:] = 0.0


def test_an_identity_layer_is_chosen_and_dropping_it_is_exact(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = edited_copy(export_tiny("llama"), tmp_path / "identity", _make_layer_0_an_identity)
    manifest = run_recipe(source, tmp_path / "dropped", '[[passes]]\nname = "drop-layers"\ncount = 1')
    record = manifest["passes"][-1]
    assert record["layers_dropped"] == [0]
    assert record["block_influence"][0] < 1e-6 < record["block_influence"][1]
    np.testing.assert_allclose(batch_logits(tmp_path / "dropped"), batch_logits(source), atol=1e-5)
    graph = onnx.load(tmp_path / "dropped" / "model.onnx", load_external_data=False).graph
    assert [i.name for i in graph.input if i.name.startswith("past")] == [
        "past_key_values.0.key",
        "past_key_values.0.value",
    ]
    assert not any(w.name.startswith("model.layers.1.") for w in graph.initializer)  # layer 1 is now layer 0
    config = json.loads((tmp_path / "dropped" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and manifest["architecture"]["num_layers"] == 1


def test_dropping_the_last_layer_renumbers_nothing_and_still_decodes(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = export_tiny("mistral")
    run_recipe(source, tmp_path / "dropped", '[[passes]]\nname = "drop-layers"\nlayers = [1]')
    assert greedy_with_cache(tmp_path / "dropped") == greedy_without_cache(tmp_path / "dropped")


def test_dropping_every_layer_is_refused(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    import pytest

    from onnxforge.errors import BadInput

    with pytest.raises(BadInput, match=r"cannot drop layers \[0, 1\] of a model with 2 layers"):
        run_recipe(export_tiny("llama"), tmp_path / "out", '[[passes]]\nname = "drop-layers"\nlayers = [0, 1]')
    assert not (tmp_path / "out").exists()
