"""`fuse` with `runtime = "1.30"`: the older GroupQueryAttention form, same tokens, and a clear refusal below it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from onnxforge.errors import BadInput
from onnxforge.folder import BATCH_ROWS_KEY
from onnxforge.passes.fusion.fuse import FuseConfig
from onnxforge.passes.runtime_versions import minimum_version
from tests.passes.fusion.test_fuse import PROMPTS, fuse_folder
from tests.passes.helpers import batch_logits, greedy_with_cache


@pytest.fixture(scope="module")
def both(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ir.Model]:
    root = tmp_path_factory.mktemp("runtime-fit")
    fuse_folder(export_tiny("llama"), root / "newest")
    older, _ = fuse_folder(export_tiny("llama"), root / "older", FuseConfig(runtime="1.30"))
    return root / "newest", root / "older", older


def test_the_older_form_loads_in_1_30_and_gives_the_same_logits_and_tokens(both: tuple[Path, Path, ir.Model]) -> None:
    newest, older, model = both
    attention = [node for node in model.graph if node.op_type == "GroupQueryAttention"]
    assert attention and all(len(node.inputs) <= 16 for node in attention)
    assert minimum_version(model)[0] <= (1, 30) < minimum_version(ir.load(newest / "model.onnx"))[0]
    assert BATCH_ROWS_KEY not in model.metadata_props
    assert len(model.graph) < len(ir.load(newest / "model.onnx").graph)  # what computed query_seqlens is gone
    np.testing.assert_allclose(batch_logits(older), batch_logits(newest), atol=1e-5)
    for prompt in PROMPTS:
        assert greedy_with_cache(older, prompt) == greedy_with_cache(newest, prompt)


def test_a_release_without_attention_bias_is_refused_with_what_needs_newer(
        export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"cannot load in ONNX Runtime 1.20: GroupQueryAttention with 11 inputs "
                                       r"\(needs 1.22\)"):
        fuse_folder(export_tiny("llama"), tmp_path / "f", FuseConfig(runtime="1.20"))


def test_a_runtime_that_is_not_a_version_is_refused() -> None:
    with pytest.raises(BadInput, match="runtime: not an ONNX Runtime version"):
        FuseConfig(runtime="newest")
