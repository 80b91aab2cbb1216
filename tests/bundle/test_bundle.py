"""`onnxforge bundle` on tiny folders: each target's layout, its manifest, verification and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx_ir as ir
import onnxruntime as ort
import pytest

from onnxforge.bundle.build import BundleRequest, bundle
from onnxforge.bundle.manifest import graph_facts, sha256_file, verify
from onnxforge.cli import main
from onnxforge.folder import BATCH_ROWS_KEY
from onnxforge.passes.runtime_versions import parse_version


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capfd.readouterr()
    status = main(args)
    return status, capfd.readouterr().err.strip().splitlines()


def test_a_web_bundle_has_transformers_js_layout_and_loads_in_onnxruntime_1_30(
        tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "web"
    manifest = bundle(BundleRequest((tiny_folders["fused"], tiny_folders["int4"]), out, "web"))
    assert sorted(p.name for p in (out / "onnx").iterdir()) == ["model.onnx", "model.onnx_data", "model_q4.onnx",
                                                                "model_q4.onnx_data"]
    config = json.loads((out / "config.json").read_text())["transformers.js_config"]
    assert config == {"dtype": "fp32", "use_external_data_format": {"model.onnx": 1, "model_q4.onnx": 1}}
    for graph in manifest["graphs"]:
        model = ir.load(out / graph["path"])
        assert max(len(n.inputs) for n in model.graph if n.op_type == "GroupQueryAttention") <= 16
        assert parse_version(graph["minimum_onnxruntime"]) <= (1, 30) and BATCH_ROWS_KEY not in model.metadata_props
        assert manifest["parity"][graph["path"]]["greedy_tokens_identical"]
    q4 = next(g for g in manifest["graphs"] if g["path"] == "onnx/model_q4.onnx")
    assert q4["quantization"]["schemes"]["MatMulNBits 4-bit, blocks of 32"] > 0
    assert q4["kv_cache"]["inputs"] == "past_key_values.{layer}.{key|value}" and q4["kv_cache"]["layers"] == 2
    assert verify(out) == []


def test_a_server_bundle_is_the_folder_with_a_manifest_that_verify_checks(
        tiny_folders: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "server"
    status, _ = _run(["bundle", str(tiny_folders["int4"]), str(out), "--target", "server"], capfd)
    assert status == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sha256_file(out / "model.onnx") == sha256_file(tiny_folders["int4"] / "model.onnx")
    assert {entry["path"] for entry in manifest["files"]} == {p.name for p in out.iterdir()} - {"manifest.json"}
    assert manifest["graphs"][0]["minimum_onnxruntime"] == "1.32"  # GroupQueryAttention's query_seqlens
    assert _run(["bundle", "--verify", str(out)], capfd)[0] == 0
    (out / "tokenizer.json").write_text("{}")
    status, err = _run(["bundle", "--verify", str(out)], capfd)
    assert status == 2 and len(err) == 1 and "tokenizer.json: sha256 differs" in err[0]


def test_a_mobile_bundle_is_ort_format_with_its_operator_list_and_the_same_tokens(
        tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mobile"
    manifest = bundle(BundleRequest((tiny_folders["int4"],), out, "mobile"))
    assert (out / "model.ort").is_file() and not (out / "model.onnx").exists()
    operators = (out / "required_operators.config").read_text()
    assert "com.microsoft;1;" in operators and "MatMulNBits" in operators and "/tmp" not in operators
    session = ort.InferenceSession(str(out / "model.ort"), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} >= {"input_ids", "attention_mask", "past_key_values.0.key"}
    assert manifest["graphs"][0]["format"] == "ort" and manifest["parity"]["model.ort"]["greedy_tokens_identical"]
    assert graph_facts(out, "model.ort") == manifest["graphs"][0]


def test_a_genai_bundle_declares_the_graph_for_onnxruntime_genai(tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "genai"
    bundle(BundleRequest((tiny_folders["fused"],), out, "genai"))
    config = json.loads((out / "genai_config.json").read_text())
    decoder = config["model"]["decoder"]
    assert decoder["filename"] == "model.onnx" and decoder["num_key_value_heads"] == 2 and decoder["head_size"] == 16
    assert decoder["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert config["search"]["past_present_share_buffer"] is True
    assert config["model"]["eos_token_id"] == json.loads((out / "generation_config.json").read_text())["eos_token_id"]


@pytest.mark.parametrize(("args", "message"), [
    (["fp32", "fused", "OUT", "--target", "web"], "are both fp32 graphs"),
    (["fp32", "int4", "OUT", "--target", "server"], "the server target bundles one folder"),
    (["int4", "OUT", "--target", "web", "--runtime", "1.20"], "cannot load in ONNX Runtime 1.20"),
    (["int4", "OUT", "--target", "web", "--runtime", "soon"], "--runtime: not an ONNX Runtime version"),
    (["int4", "OUT"], "--target"),
    (["OUT", "--verify"], "no manifest.json"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_folders: dict[str, Path], tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str], args: list[str],
                                                  message: str) -> None:
    out = tmp_path / "out"
    if "--verify" in args:
        out.mkdir()
    paths = [str(tiny_folders.get(a, out if a == "OUT" else a)) for a in args]
    status, err = _run(["bundle", *paths], capfd)
    assert status == 2 and len(err) == 1 and message in err[0]
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if "--verify" in args else [])


def test_folders_of_different_models_are_refused(tiny_folders: dict[str, Path], export_tiny, tmp_path: Path,  # noqa: ANN001
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    status, err = _run(["bundle", str(export_tiny("qwen3")), str(tiny_folders["int4"]), str(tmp_path / "o"),
                        "--target", "web"], capfd)
    assert status == 2 and len(err) == 1 and "is not the same model" in err[0]
