"""Bundles of the real default model (fp32, fused, int4) in every client: the same greedy ids as our runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onnxforge.bundle.build import BundleRequest, bundle
from onnxforge.bundle.manifest import verify
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from tests.bundle.clients import (
    genai_ids,
    ort_client_ids,
    our_greedy_ids,
    same_ids_but_near_ties,
    transformers_js_ids,
    with_float_accumulation,
)
from tests.passes.helpers import SMALL_CALIBRATION

pytestmark = pytest.mark.slow

PROMPTS = ["The capital of France is", "def fibonacci(n):"]
TOKENS = 20


@pytest.fixture(scope="module")
def folders(default_export: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("default-bundles")
    found = {"fp32": default_export[0]}
    for recipe in ("fuse", "int4"):
        compress(default_export[0], root / recipe, load_recipe(recipe), SMALL_CALIBRATION)
        found[recipe] = root / recipe
    return found


@pytest.mark.parametrize(("members", "checked"), [
    (("fp32", "int4"), (("fp32", "fp32", "onnx/model.onnx"), ("int4", "q4", "onnx/model_q4.onnx"))),
    (("fuse",), (("fuse", "fp32", "onnx/model.onnx"),)),
])
def test_web_bundles_give_our_greedy_ids_in_transformers_js_onnxruntime_node_and_wasm(
        folders: dict[str, Path], tmp_path: Path, members: tuple[str, ...], checked: tuple) -> None:
    out = tmp_path / "web"
    bundle(BundleRequest(tuple(folders[m] for m in members), out, "web"))
    assert verify(out) == []
    for source, dtype, graph in checked:
        prompts, expected = our_greedy_ids(folders[source], PROMPTS, TOKENS)
        assert max(map(len, expected)) == TOKENS  # one prompt may stop early at the end-of-text token
        assert transformers_js_ids(out, dtype, TOKENS, PROMPTS) == expected, source
        assert ort_client_ids("node", out, graph, TOKENS, prompts) == expected, source
        if dtype == "q4":  # WASM computes MatMulNBits in float, not with the int8 activations of accuracy_level 4
            _, expected = our_greedy_ids(with_float_accumulation(folders[source], tmp_path / "float"), PROMPTS, TOKENS)
        assert ort_client_ids("wasm", out, graph, TOKENS, prompts) == expected, source


def test_mobile_and_genai_bundles_of_int4_run_with_our_greedy_ids(folders: dict[str, Path], tmp_path: Path) -> None:
    prompts, expected = our_greedy_ids(folders["int4"], PROMPTS, TOKENS)
    mobile = bundle(BundleRequest((folders["int4"],), tmp_path / "mobile", "mobile"))
    assert mobile["parity"]["model.ort"]["greedy_tokens_identical"]
    bundle(BundleRequest((folders["int4"],), tmp_path / "genai", "genai"))
    theirs = genai_ids(tmp_path / "genai", TOKENS, prompts)
    assert same_ids_but_near_ties(folders["int4"], prompts, expected, theirs), (theirs, expected)
