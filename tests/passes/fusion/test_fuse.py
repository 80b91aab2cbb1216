"""FusePass on tiny exports: what it fuses, and that logits and tokens stay those of the original graph."""

from __future__ import annotations

import collections
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest

from onnxforge.folder import KV_CACHE_KEY, LOGITS_TO_KEEP, SHARED_BUFFER
from onnxforge.passes.base import open_pass_log, set_model_facts, take_pass_log
from onnxforge.passes.fusion.fuse import FuseConfig, FusePass
from onnxforge.passes.fusion.last_logits import PREFIX as LAST_LOGITS_PREFIX
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.loop import pad_rows
from onnxforge.runtime.sampling import SamplingSettings
from tests.passes.helpers import greedy_with_cache

ATOL = 1e-4
ROWS = [[5, 17, 33, 8, 90, 41, 7, 120, 66, 3, 250, 12], [44, 45, 9, 200, 31]]  # the second is left-padded
PROMPTS = ["Hello there", "The quick brown fox jumps over the lazy dog", "a"]


def fuse_folder(source: Path, target: Path, config: FuseConfig | None = None) -> tuple[ir.Model, dict[str, Any]]:
    """Copy `source` to `target` with its model.onnx fused; return the fused model and the pass's log entry."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.onnx", "model.onnx_data"))
    model = ir.load(source / "model.onnx")
    set_model_facts(model, facts(source))
    open_pass_log(model)
    FusePass(config or FuseConfig())(model)
    [entry] = take_pass_log(model)
    ir.save(model, target / "model.onnx", external_data="model.onnx_data")
    return model, entry


def facts(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "onnxforge.json").read_text())["architecture"]


def op_counts(model: ir.Model) -> collections.Counter[str]:
    return collections.Counter(node.op_type for node in model.graph)


@pytest.fixture(scope="module")
def llama(export_tiny: Callable[[str], Path]) -> Path:
    return export_tiny("llama")


@pytest.fixture(scope="module")
def fused(llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ir.Model, dict[str, Any]]:
    target = tmp_path_factory.mktemp("fused") / "llama"
    model, entry = fuse_folder(llama, target)
    return target, model, entry


def _prefill_and_steps(decoder: Decoder, steps: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """Logits of a left-padded prefill (past of length 0), then of `steps` one-token calls and one 3-token call."""
    ids, mask = pad_rows(ROWS)
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
    logits, past = decoder.forward(ids, mask, positions, decoder.empty_past(len(ROWS)))
    outputs = [logits]
    for step in range(steps + 1):
        width = 3 if step == steps else 1
        ids = np.array([[60 + step + i for i in range(width)]] * len(ROWS), dtype=np.int64)
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
        positions = positions[:, -1:] + 1 + np.arange(width)
        logits, past = decoder.forward(ids, mask, positions, past)
        outputs.append(logits)
    return outputs, pad_rows(ROWS)[1].astype(bool)


def _bound_steps(decoder: Decoder, steps: int = 6) -> list[np.ndarray]:
    """Last-position logits of IO-bound calls through the decoder's own cache (shared buffer when marked)."""
    ids, mask = pad_rows(ROWS)
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
    cache = decoder.new_cache(len(ROWS), ids.shape[1] + steps)
    outputs = []
    for step in range(steps):
        outputs.append(decoder.step(cache, ids, mask, positions))
        ids = np.array([[70 + 3 * step]] * len(ROWS), dtype=np.int64)
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
        positions = positions[:, -1:] + 1
    return outputs


def test_the_fused_graph_uses_the_contrib_kernels_and_keeps_its_signature(llama: Path, fused) -> None:
    _, model, entry = fused
    original, layers = ir.load(llama / "model.onnx"), facts(llama)["num_layers"]
    counts = op_counts(model)
    # rotary inside the kernel, which reads the packed q/k/v: no RotaryEmbedding, no Split
    assert counts["GroupQueryAttention"] == layers == reads_packed_qkv(model) and counts["RotaryEmbedding"] == 0
    assert counts["SkipSimplifiedLayerNormalization"] == 2 * layers and counts["SimplifiedLayerNormalization"] == 1
    assert counts["Split"] == 0 and counts["MatMul"] == 5 * layers + 1  # qkv, o, gate, up, down; lm_head
    kept_logits = sum(1 for node in model.graph if node.name.startswith(LAST_LOGITS_PREFIX))  # its own input
    assert 0 < kept_logits < 30 and model.graph.num_nodes() - kept_logits < original.graph.num_nodes() / 3
    assert model.metadata_props[KV_CACHE_KEY] == SHARED_BUFFER
    assert [v.name for v in model.graph.inputs] == [v.name for v in original.graph.inputs] + [LOGITS_TO_KEEP]
    assert [v.name for v in model.graph.outputs] == [v.name for v in original.graph.outputs]
    assert entry["pass"] == "fuse" and entry["fused"]["GroupQueryAttention"] == layers and entry["shared_kv_buffer"]
    assert entry["rules_applied"]["last_logits"] == 1
    assert entry["nodes_after"] == model.graph.num_nodes() < entry["nodes_before"]


def test_logits_match_for_a_left_padded_prefill_and_later_steps(llama: Path, fused) -> None:
    original, fused_decoder = Decoder(llama), Decoder(fused[0])
    expected, real = _prefill_and_steps(original)
    got, _ = _prefill_and_steps(fused_decoder)
    np.testing.assert_allclose(got[0][real], expected[0][real], atol=ATOL)  # padding positions are don't-care
    for step, (ours, theirs) in enumerate(zip(got[1:], expected[1:])):
        np.testing.assert_allclose(ours, theirs, atol=ATOL, err_msg=f"step {step}")


def test_the_shared_kv_buffer_gives_the_logits_of_the_growing_cache(llama: Path, fused) -> None:
    shared = Decoder(fused[0])
    assert shared.layout.shared_buffer
    for step, (ours, theirs) in enumerate(zip(_bound_steps(shared), _bound_steps(Decoder(llama)))):
        np.testing.assert_allclose(ours, theirs, atol=ATOL, err_msg=f"step {step}")


@pytest.mark.parametrize("sampling", [SamplingSettings(), SamplingSettings(temperature=1.0, seed=7)],
                         ids=["greedy", "seeded-sampling"])
def test_generation_gives_the_same_tokens_alone_and_in_a_batch(llama: Path, fused, sampling) -> None:
    settings = GenerationSettings(24, sampling)
    original, ours = Generator(llama), Generator(fused[0])

    def tokens(generator: Generator, prompts: list[str]) -> list[list[int]]:
        return [c.token_ids for c in generator.generate(prompts, settings, raw=True).completions]

    for prompt in PROMPTS:
        assert tokens(ours, [prompt]) == tokens(original, [prompt])
    assert tokens(ours, PROMPTS) == tokens(original, PROMPTS)


def reads_packed_qkv(model: ir.Model) -> int:
    """GroupQueryAttention nodes that take the packed q/k/v as their only projection input."""
    return sum(1 for n in model.graph if n.op_type == "GroupQueryAttention" and n.inputs[1] is None)


@pytest.mark.parametrize("config", [
    FuseConfig(attention=False),
    FuseConfig(attention=False, rotary=False, pack_qkv=False),
    FuseConfig(norms=False, pack_qkv=False),
    FuseConfig(rotary_in_attention=False),
    FuseConfig(rotary=False),
    FuseConfig(pack_gate_up=True),
], ids=["no-attention", "norms-only", "attention-without-packing", "rotary-outside-attention", "rotary-unfused",
        "gate-up-packed"])
def test_each_part_alone_keeps_the_logits(llama: Path, config: FuseConfig, tmp_path: Path) -> None:
    model, _ = fuse_folder(llama, tmp_path / "m", config)
    counts, layers = op_counts(model), facts(llama)["num_layers"]
    assert counts["GroupQueryAttention"] == (layers if config.attention else 0)
    inside = config.attention and config.rotary and config.rotary_in_attention
    assert counts["RotaryEmbedding"] == (2 * layers if config.rotary and not inside else 0)
    assert counts["SkipSimplifiedLayerNormalization"] == (2 * layers if config.norms else 0)
    assert counts["Split"] == (layers if config.pack_qkv and not inside else 0) + (layers if config.pack_gate_up else 0)
    if config.attention:  # projections only: lm_head, per layer q/k/v (or one), o, gate and up (or one), down
        assert counts["MatMul"] == 1 + layers * ((1 if config.pack_qkv else 3) + 1 + (1 if config.pack_gate_up else 2) + 1)
    assert reads_packed_qkv(model) == (layers if config.pack_qkv and inside else 0)
    assert (KV_CACHE_KEY in model.metadata_props) == config.attention
    expected, real = _prefill_and_steps(Decoder(llama), steps=1)
    got, _ = _prefill_and_steps(Decoder(tmp_path / "m"), steps=1)
    np.testing.assert_allclose(got[0][real], expected[0][real], atol=ATOL)
    np.testing.assert_allclose(got[-1], expected[-1], atol=ATOL)


@pytest.mark.parametrize("arch", ["qwen2"])
def test_projection_biases_are_packed_too(arch: str, export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny(arch)
    model, entry = fuse_folder(folder, tmp_path / "m")
    assert entry["fused"]["GroupQueryAttention"] == facts(folder)["num_layers"] == reads_packed_qkv(model)
    expected, real = _prefill_and_steps(Decoder(folder), steps=1)
    got, _ = _prefill_and_steps(Decoder(tmp_path / "m"), steps=1)
    np.testing.assert_allclose(got[0][real], expected[0][real], atol=ATOL)
    np.testing.assert_allclose(got[-1], expected[-1], atol=ATOL)


def test_a_graph_it_cannot_match_is_left_as_it_was(export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny("gpt2")  # LayerNorm, Gemm projections, learned positions: only its attention would fuse
    model, entry = fuse_folder(folder, tmp_path / "m", FuseConfig(attention=False, last_logits=False))
    assert op_counts(model) == op_counts(ir.load(folder / "model.onnx"))
    assert KV_CACHE_KEY not in model.metadata_props and not entry["shared_kv_buffer"]
    assert entry["fused"] == {} and entry["nodes_after"] == entry["nodes_before"]
    expected, real = _prefill_and_steps(Decoder(folder), steps=1)
    got, _ = _prefill_and_steps(Decoder(tmp_path / "m"), steps=1)
    np.testing.assert_array_equal(got[0][real], expected[0][real])
    np.testing.assert_array_equal(got[-1], expected[-1])


def test_the_config_is_checked() -> None:
    with pytest.raises(ValueError, match="norms must be true or false"):
        FuseConfig(norms=1)  # type: ignore[arg-type]
    assert FuseConfig(attention=False, rotary=False).to_json() == {
        "attention": False, "rotary": False, "norms": True, "pack_qkv": True, "pack_gate_up": False,
        "rotary_in_attention": True,
        "last_logits": True, "runtime": ""}
    with pytest.raises(ValueError, match="runtime: "):
        FuseConfig(runtime="newest")


def test_a_second_fuse_changes_nothing_and_says_so(fused: tuple[Path, ir.Model, dict[str, Any]]) -> None:
    folder, model, _ = fused
    again = ir.load(folder / "model.onnx")
    set_model_facts(again, facts(folder))
    assert FusePass()(again).modified is False
    assert op_counts(again) == op_counts(model)


def _with_window(folder: Path, target: Path, window: int) -> Path:
    copy = Path(shutil.copytree(folder, target))
    manifest = json.loads((copy / "onnxforge.json").read_text())
    manifest["architecture"]["sliding_window"] = window
    (copy / "onnxforge.json").write_text(json.dumps(manifest))
    return copy


def _windows(model: ir.Model) -> list[int | None]:
    return [node.attributes.get_int("local_window_size", None) for node in model.graph
            if node.op_type == "GroupQueryAttention"]


def _prefill_then_step(decoder: Decoder, length: int) -> tuple[np.ndarray, np.ndarray]:
    ids = (np.arange(length, dtype=np.int64)[None] * 7) % 250
    logits, present = decoder.forward(ids, np.ones_like(ids), np.arange(length)[None], decoder.empty_past(1))
    step = np.array([[5, 9]])
    mask, positions = np.ones((1, length + 2), np.int64), np.array([[length, length + 1]])
    return logits, decoder.forward(step, mask, positions, present)[0]


def _assert_same_across_the_window(folder: Path, fused_folder: Path, window: int) -> None:
    exported, fused = Decoder(folder), Decoder(fused_folder)
    for length in (window - 6, window + 1, 3 * window):  # within, just past and well past the window
        for got, expected in zip(_prefill_then_step(fused, length), _prefill_then_step(exported, length)):
            np.testing.assert_allclose(got, expected, atol=ATOL)


def test_interleaved_sliding_and_global_layers_get_their_own_windows(
    export_tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = export_tiny("gemma3_text")  # layer 0 slides, layer 1 is global; q/k norm after the head transpose
    known = facts(folder)
    model, _ = fuse_folder(folder, tmp_path / "m")
    expected = [known["sliding_window"] if layer in known["sliding_layers"] else -1
                for layer in range(known["num_layers"])]
    assert _windows(model) == expected and len(set(expected)) == 2
    _assert_same_across_the_window(folder, tmp_path / "m", known["sliding_window"])


def test_a_sliding_window_model_fuses_with_its_window(export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny("mistral")
    window = facts(folder)["sliding_window"]
    model, entry = fuse_folder(folder, tmp_path / "m")
    assert _windows(model) == [window] * facts(folder)["num_layers"] and entry["shared_kv_buffer"]
    _assert_same_across_the_window(folder, tmp_path / "m", window)
    prompt = "a long prompt that is well past sixteen bytes"
    assert greedy_with_cache(tmp_path / "m", prompt, 48) == greedy_with_cache(folder, prompt, 48)


def test_a_window_as_wide_as_the_context_is_no_window(llama: Path, tmp_path: Path) -> None:
    source = _with_window(llama, tmp_path / "windowed", window=facts(llama)["max_positions"])
    model, entry = fuse_folder(source, tmp_path / "m")
    assert _windows(model) == [-1] * facts(llama)["num_layers"]
