"""Export of each tiny architecture: optimum's interface, weights once, parity with torch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxforge.folder import io_names, read_manifest
from onnxforge.runtime.decoder import Decoder

from ..conftest import TINY_ARCHITECTURES

HF_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "model.onnx", "model.onnx_data", "onnxforge.json")


def _dims(value: onnx.ValueInfoProto) -> list[object]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_export_passes_parity_with_torch(arch: str, export_tiny: Callable[[str], Path]) -> None:
    manifest = read_manifest(export_tiny(arch))
    parity, window = manifest["parity"], manifest["architecture"]["sliding_window"]
    assert parity["passed"] and parity["greedy_identical"] == ("4/4" if window else "3/3")  # + 64 across the window
    assert parity["worst_abs_logits_diff"] <= 1e-4  # fp32, tiny model: far inside the 1e-3 tolerance
    probes = {"prefill_batch2_left_padded", "decode_past_gt_0", "sequence_200", "decode_after_past_200"}
    probes |= {f"decode_after_past_{window + 1}", f"decode_after_past_{2 * window}"} if window else set()
    assert set(parity["max_abs_logits_diff"]) == probes


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_folder_follows_the_optimum_convention(arch: str, export_tiny: Callable[[str], Path]) -> None:
    folder = export_tiny(arch)
    assert all((folder / name).is_file() for name in HF_FILES)
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    inputs, outputs = io_names(num_layers=2)
    assert [v.name for v in model.graph.input] == inputs
    assert [v.name for v in model.graph.output] == outputs
    shapes = {v.name: _dims(v) for v in (*model.graph.input, *model.graph.output)}
    assert shapes["input_ids"] == ["batch_size", "sequence_length"]
    assert shapes["attention_mask"] == ["batch_size", "past_sequence_length + sequence_length"]
    assert shapes["past_key_values.1.value"][::2] == ["batch_size", "past_sequence_length"]
    assert shapes["present.0.key"][2] == "past_sequence_length + sequence_length"
    assert not list(folder.parent.glob(f".{arch}.*")), "staging folders must not remain"
    onnx.checker.check_model(str(folder / "model.onnx"), full_check=True)


@pytest.mark.parametrize(("arch", "copies"), [("llama", 1), ("gpt2", 1), ("mistral", 2)])
def test_tied_embedding_is_stored_once(arch: str, copies: int, export_tiny: Callable[[str], Path]) -> None:
    model = onnx.load(export_tiny(arch) / "model.onnx", load_external_data=False)
    vocab_by_hidden = [t for t in model.graph.initializer if list(t.dims) in ([259, 64], [64, 259])]
    assert len(vocab_by_hidden) == copies


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_prefill_in_two_calls_equals_prefill_in_one(arch: str, export_tiny: Callable[[str], Path]) -> None:
    decoder = Decoder(export_tiny(arch))
    ids = np.arange(40, 52, dtype=np.int64)[None]
    positions = np.arange(12, dtype=np.int64)[None]
    whole, _ = decoder.forward(ids, np.ones_like(ids), positions, decoder.empty_past(1))
    _, past = decoder.forward(ids[:, :7], np.ones((1, 7), np.int64), positions[:, :7], decoder.empty_past(1))
    tail, _ = decoder.forward(ids[:, 7:], np.ones_like(ids), positions[:, 7:], past)
    np.testing.assert_allclose(tail, whole[:, 7:], atol=1e-5)


def test_manifest_records_source_versions_sizes_and_time(export_tiny: Callable[[str], Path]) -> None:
    folder = export_tiny("llama")
    manifest = read_manifest(folder)
    assert manifest["source"] == {"name": "tiny:llama", "kind": "tiny"}
    assert manifest["opset"] == 18 and manifest["versions"]["torch"].startswith("2.13.0")
    assert manifest["files_bytes"]["model.onnx_data"] == (folder / "model.onnx_data").stat().st_size
    assert manifest["export_seconds"] > 0 and set(manifest["steps_seconds"]) >= {"load", "trace", "save"}


def test_failed_parity_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxforge.exporter import export as export_module

    failing = {"passed": False, "worst_abs_logits_diff": 0.5, "tolerance": 1e-3,
               "greedy_identical": "1/3", "tokenizer_identical": True}
    monkeypatch.setattr(export_module, "check_parity", lambda folder, loaded: failing)
    with pytest.raises(export_module.ParityError, match=r"worst \|Δ logits\| 5.00e-01.*nothing was written"):
        export_module.export_model("tiny:gpt2", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_higher_opset_is_exported_and_recorded(tmp_path: Path) -> None:
    from onnxforge.exporter.export import export_model

    manifest = export_model("tiny:qwen2", tmp_path / "out", opset=21)
    model = onnx.load(tmp_path / "out" / "model.onnx", load_external_data=False)
    assert manifest["opset"] == 21 == next(o.version for o in model.opset_import if o.domain == "")
    assert manifest["parity"]["passed"]


def test_onnxruntime_fuses_every_rmsnorm_of_the_export(export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(export_tiny("llama") / "model.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(tmp_path / "optimized.onnx", load_external_data=False)
    ops = Counter(node.op_type for node in optimized.graph.node)
    assert ops["SimplifiedLayerNormalization"] == 2 * 2 + 1 and ops["Reciprocal"] == 0


def test_the_key_transpose_is_one_node(export_tiny: Callable[[str], Path]) -> None:
    model = onnx.load(export_tiny("llama") / "model.onnx", load_external_data=False)
    perms = [tuple(a.ints) for n in model.graph.node if n.op_type == "Transpose" for a in n.attribute]
    assert (0, 2, 1) not in perms and perms.count((0, 1, 3, 2)) == 2
