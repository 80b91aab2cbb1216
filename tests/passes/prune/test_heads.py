"""Head pruning: removing heads that contribute nothing is exact, in query and in KV-group mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxforge.errors import BadInput
from tests.passes.helpers import batch_logits, edited_copy, greedy_with_cache, greedy_without_cache, run_recipe

HEAD_DIM = 16  # tiny llama: 4 heads in 2 KV groups of 2


def _silence_heads(heads: list[int]):  # noqa: ANN202
    def edit(arrays: dict[str, np.ndarray]) -> None:
        for layer in range(2):
            for head in heads:
                arrays[f"model.layers.{layer}.self_attn.o_proj.weight"][head * HEAD_DIM : (head + 1) * HEAD_DIM] = 0.0

    return edit


@pytest.mark.parametrize(
    ("mode", "silenced", "heads", "kv_heads"), [("query", [1, 2], 2, 2), ("kv_groups", [2, 3], 2, 1)]
)
@pytest.mark.parametrize("scoring", ["magnitude", "activation"])
def test_removing_silent_heads_is_exact(
    export_tiny,
    tmp_path: Path,
    mode: str,
    silenced: list[int],  # noqa: ANN001
    heads: int,
    kv_heads: int,
    scoring: str,
) -> None:
    source = edited_copy(export_tiny("llama"), tmp_path / "silenced", _silence_heads(silenced))
    recipe = f'[[passes]]\nname = "prune-heads"\nratio = 0.5\nmode = "{mode}"\nscoring = "{scoring}"'
    manifest = run_recipe(source, tmp_path / "pruned", recipe)
    np.testing.assert_allclose(batch_logits(tmp_path / "pruned"), batch_logits(source), atol=1e-5)
    assert manifest["passes"][-1]["kept_heads"] == [[h for h in range(4) if h not in silenced]] * 2
    assert (manifest["architecture"]["num_heads"], manifest["architecture"]["num_kv_heads"]) == (heads, kv_heads)
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        heads,
        kv_heads,
        HEAD_DIM,
    )
    graph = onnx.load(tmp_path / "pruned" / "model.onnx", load_external_data=False).graph
    past = next(i for i in graph.input if i.name == "past_key_values.0.key")
    assert past.type.tensor_type.shape.dim[1].dim_value == kv_heads


def test_kv_group_pruned_model_decodes_with_its_smaller_cache(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    run_recipe(
        export_tiny("qwen2"), tmp_path / "pruned", '[[passes]]\nname = "prune-heads"\nratio = 0.5\nmode = "kv_groups"'
    )
    assert greedy_with_cache(tmp_path / "pruned") == greedy_without_cache(tmp_path / "pruned")


def test_a_ratio_that_removes_no_whole_head_is_refused(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(BadInput, match="ratio 0.1 removes 0 of 2 query heads per group"):
        run_recipe(export_tiny("llama"), tmp_path / "out", '[[passes]]\nname = "prune-heads"\nratio = 0.1')


def test_a_pruned_model_still_fuses_with_the_same_outputs(export_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    source = export_tiny("llama")
    prune = '[[passes]]\nname = "prune-heads"\nratio = 0.5\n\n[[passes]]\nname = "prune-ffn"\nratio = 0.25'
    run_recipe(source, tmp_path / "pruned", prune)
    manifest = run_recipe(source, tmp_path / "fused", prune + '\n\n[[passes]]\nname = "fuse"')
    assert manifest["passes"][-1]["fused"]["GroupQueryAttention"] == 2
    np.testing.assert_allclose(batch_logits(tmp_path / "fused"), batch_logits(tmp_path / "pruned"), atol=1e-4)
    assert greedy_with_cache(tmp_path / "fused") == greedy_with_cache(tmp_path / "pruned")
