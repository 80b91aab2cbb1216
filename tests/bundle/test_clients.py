"""The clients of other runtimes (transformers.js, onnxruntime-node and -web, onnxruntime-genai) read tiny bundles
and generate the same greedy ids as our runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxforge.bundle.build import BundleRequest, bundle
from tests.bundle.clients import genai_ids, ort_client_ids, our_greedy_ids, transformers_js_ids

PROMPTS = ["Hello there", "The quick brown fox"]
TOKENS = 8


@pytest.fixture(scope="module")
def web_bundle(tiny_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web") / "bundle"
    bundle(BundleRequest((tiny_folders["fused"], tiny_folders["int4"]), out, "web"))
    return out


@pytest.mark.parametrize(("source", "dtype", "graph"), [("fused", "fp32", "onnx/model.onnx"),
                                                        ("int4", "q4", "onnx/model_q4.onnx")])
def test_transformers_js_onnxruntime_node_and_wasm_match_our_runtime(
        web_bundle: Path, tiny_folders: dict[str, Path], source: str, dtype: str, graph: str) -> None:
    prompts, expected = our_greedy_ids(tiny_folders[source], PROMPTS, TOKENS)
    assert transformers_js_ids(web_bundle, dtype, TOKENS, PROMPTS) == expected
    assert ort_client_ids("node", web_bundle, graph, TOKENS, prompts) == expected
    assert ort_client_ids("wasm", web_bundle, graph, TOKENS, prompts) == expected


def test_onnxruntime_genai_runs_a_genai_bundle_with_our_tokens(tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "genai"
    bundle(BundleRequest((tiny_folders["int4"],), out, "genai"))
    prompts, expected = our_greedy_ids(tiny_folders["int4"], PROMPTS, TOKENS)
    assert genai_ids(out, TOKENS, prompts) == expected
