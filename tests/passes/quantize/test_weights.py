"""Quantisation passes on tiny exports: storage forms agree, excluded weights stay float, files shrink,
int8 QDQ passes the checker and runs, fp16 keeps float32 I/O, the budget search respects its budget."""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from onnxforge.passes.base import set_model_facts
from onnxforge.passes.calibration import Calibration
from onnxforge.passes.quantize.weight_matmuls import embedding_lookup, weight_matmuls
from tests.passes.helpers import SMALL_CALIBRATION, batch_logits, edited_copy, greedy_with_cache, run_recipe


def recipe(**fields: object) -> str:
    """A one-pass recipe: [[passes]] with `fields` (name included)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    return 'description = "test"\n[[passes]]\n' + "\n".join(lines) + "\n"


def op_counts(folder: Path) -> collections.Counter[str]:
    return collections.Counter(node.op_type for node in ir.load(folder / "model.onnx").graph)


def last_log(manifest: dict) -> dict:
    return manifest["passes"][-1]


@pytest.fixture(scope="module")
def llama(export_tiny: Callable[[str], Path]) -> Path:
    return export_tiny("llama")


@pytest.fixture(scope="module")
def mistral(export_tiny: Callable[[str], Path]) -> Path:
    return export_tiny("mistral")


def dequantized_copy(source: Path, out: Path, bits: int, symmetric: bool, zero_point: str = "integer") -> Path:
    """The float model with every weight replaced by its quantise-dequantise round trip (same code path)."""
    from onnxforge.passes.quantize.blockwise import quantize

    model = ir.load(source / "model.onnx")
    transposed = {w.weight.name: w.transposed for w in weight_matmuls(model.graph)}
    table = embedding_lookup(model.graph).inputs[0].name

    def edit(arrays: dict[str, np.ndarray]) -> None:
        for name, is_transposed in transposed.items():
            weight = arrays[name].T if is_transposed else arrays[name]
            values = quantize(weight, bits, 32, symmetric, zero_point=zero_point).dequantize()
            arrays[name] = values.T if is_transposed else values
        if table not in transposed:  # an untied table gets its own asymmetric codes
            arrays[table] = quantize(arrays[table].T, bits, 32, False).dequantize().T

    return edited_copy(source, out, edit)


@pytest.mark.parametrize("arch", ["llama", "mistral"])
@pytest.mark.parametrize("bits,symmetric", [(4, False), (4, True), (8, False)])
def test_matmulnbits_and_blockwise_dq_compute_the_dequantised_model(
    arch: str, bits: int, symmetric: bool, export_tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    source = export_tiny(arch)
    common = {"name": "quantize-weights", "bits": bits, "symmetric": symmetric}
    exact = tmp_path / "exact"  # accuracy_level 0: float32 compute, so it must equal the dequantised model
    run_recipe(source, exact, recipe(**common, accuracy_level=0))
    reference = batch_logits(dequantized_copy(source, tmp_path / "reference", bits, symmetric))
    np.testing.assert_allclose(batch_logits(exact), reference, atol=1e-4)
    assert op_counts(exact)["MatMulNBits"] == len(weight_matmuls(ir.load(source / "model.onnx").graph))
    qdq = tmp_path / "qdq"
    run_recipe(source, qdq, recipe(**common, format="qdq"))
    assert op_counts(qdq)["DequantizeLinear"] >= 1 and op_counts(qdq)["MatMulNBits"] == 0
    np.testing.assert_allclose(batch_logits(qdq, optimization="none"), reference, atol=1e-4)
    # optimised, ONNX Runtime turns DequantizeLinear + MatMul into MatMulNBits with int8 compute
    np.testing.assert_allclose(batch_logits(qdq), reference, atol=2e-2)


def test_offsets_compute_the_dequantised_model_embedding_included(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "offsets"
    entry = last_log(run_recipe(llama, out, recipe(name="quantize-weights", zero_point="offset", accuracy_level=0)))
    reference = batch_logits(dequantized_copy(llama, tmp_path / "reference", 4, False, "offset"))
    np.testing.assert_allclose(batch_logits(out), reference, atol=1e-4)
    assert "lm_head's 4-bit codes" in entry["embedding"]
    assert entry["kept_float"] == []  # the block sums and offset terms are not weights to quantise again
    counts, attention_matmuls = op_counts(out), op_counts(llama)["MatMul"] - 15
    assert counts["MatMulNBits"] == 15
    # block sums once per distinct input (4 per layer and lm_head's), one offset MatMul per weight, the lookup's
    assert counts["MatMul"] - attention_matmuls == 2 * 4 + 1 + 15 + 1


def gguf_copy(source: Path, out: Path) -> Path:
    """The model with its layers on gguf's Q4_1 grids and its (tied) table on Q8_0, through gguf's own code."""
    import gguf

    model = ir.load(source / "model.onnx")
    transposed = {w.weight.name: w.transposed for w in weight_matmuls(model.graph)}

    def edit(arrays: dict[str, np.ndarray]) -> None:
        for name, is_transposed in transposed.items():
            qtype = gguf.GGMLQuantizationType.Q8_0 if is_transposed else gguf.GGMLQuantizationType.Q4_1
            rows = arrays[name] if is_transposed else arrays[name].T  # gguf's blocks run along K
            restored = gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(rows), qtype), qtype)
            arrays[name] = restored if is_transposed else np.ascontiguousarray(restored.T)

    return edited_copy(source, out, edit)


def test_the_gguf_exact_recipe_keeps_a_gguf_model_bit_for_bit(llama: Path, tmp_path: Path) -> None:
    from onnxforge.passes.recipe import named_recipes

    source = gguf_copy(llama, tmp_path / "gguf")
    quantize_step = 'name = "quantize-weights"'
    text = named_recipes()["int4-gguf-exact"].replace(quantize_step, quantize_step + "\naccuracy_level = 0")
    out = tmp_path / "exact"
    layers, head = run_recipe(source, out, text)["passes"][-2:]
    assert layers["weights_kept_bit_for_bit"] == layers["weights_quantized"] == 10  # fused: q/k/v packed
    assert head["weights_kept_bit_for_bit"] == 1 and "8-bit codes" in head["embedding"]
    assert layers["weights_with_float16_exact_scales"] == 10
    np.testing.assert_allclose(batch_logits(out), batch_logits(source), atol=1e-4)
    assert greedy_with_cache(out) == greedy_with_cache(source)
    floats = [
        v for v in ir.load(out / "model.onnx").graph.initializers.values() if v.const_value.dtype == ir.DataType.FLOAT
    ]
    assert max(int(np.prod(v.const_value.shape)) for v in floats) < 64 * 64  # scales and offsets are float16


def test_tied_embedding_reads_lm_head_codes(llama: Path, tmp_path: Path) -> None:
    manifest = run_recipe(llama, tmp_path / "int4", recipe(name="quantize-weights"))
    counts = op_counts(tmp_path / "int4")
    assert counts["GatherBlockQuantized"] == 1
    assert "lm_head's 4-bit codes" in last_log(manifest)["embedding"]
    model = ir.load(tmp_path / "int4" / "model.onnx")
    floats = [v for v in model.graph.initializers.values() if v.const_value.dtype == ir.DataType.FLOAT]
    assert max(int(np.prod(v.const_value.shape)) for v in floats) < 64 * 64  # no float table left
    assert greedy_with_cache(tmp_path / "int4") == greedy_with_cache(tmp_path / "int4")  # runs through the loop


def test_untied_embedding_gets_its_own_quantised_table(mistral: Path, tmp_path: Path) -> None:
    manifest = run_recipe(mistral, tmp_path / "int4", recipe(name="quantize-weights"))
    assert "its own 4-bit codes" in last_log(manifest)["embedding"]
    assert op_counts(tmp_path / "int4")["GatherBlockQuantized"] == 1


def test_excluded_weights_stay_float(llama: Path, tmp_path: Path) -> None:
    manifest = run_recipe(llama, tmp_path / "q", recipe(name="quantize-weights", exclude=["*.mlp.*"]))
    model = ir.load(tmp_path / "q" / "model.onnx")
    kept = {w.name for w in weight_matmuls(model.graph)}
    assert kept == {f"model.layers.{i}.mlp.{p}_proj.weight" for i in range(2) for p in ("gate", "up", "down")}
    assert set(last_log(manifest)["kept_float"]) == kept


def test_int4_shrinks_the_weights(llama: Path, tmp_path: Path) -> None:
    entry = last_log(run_recipe(llama, tmp_path / "q", recipe(name="quantize-weights")))
    # 4 bits + a float32 scale per 32 + 4-bit zero point per 32 = 5.125 bits of 32
    assert entry["bytes_after"] < entry["bytes_before"] * (5.125 / 32 + 0.02)


def test_float_zero_points_keep_the_tied_table_apart(llama: Path, tmp_path: Path) -> None:
    entry = last_log(run_recipe(llama, tmp_path / "q", recipe(name="quantize-weights", zero_point="float")))
    assert "its own 4-bit codes" in entry["embedding"]  # GatherBlockQuantized takes integer zero points only
    model = ir.load(tmp_path / "q" / "model.onnx")
    zeros = [n.inputs[3] for n in model.graph if n.op_type == "MatMulNBits"]
    assert zeros and all(z.const_value.dtype == ir.DataType.FLOAT for z in zeros)
    reference = batch_logits(llama)
    assert np.abs(batch_logits(tmp_path / "q") - reference).max() < 0.5 * np.abs(reference).max()


def test_float_zero_points_are_rejected_with_symmetric_grids() -> None:
    from onnxforge.passes.quantize.weights import QuantizeWeightsConfig

    with pytest.raises(ValueError, match="zero_point"):
        QuantizeWeightsConfig(zero_point="float", symmetric=True)
    with pytest.raises(ValueError, match="bits"):
        QuantizeWeightsConfig(bits=3)


@pytest.mark.parametrize(
    "fields,named",
    [
        ({"method": "gguf"}, "zero_point = 'offset' or 'float'"),
        ({"zero_point": "offset", "method": "gptq"}, "method = 'rtn' or 'gguf'"),
        ({"zero_point": "offset", "symmetric": True}, "symmetric = false"),
        ({"scale_dtype": "float16", "format": "qdq"}, "format = 'matmulnbits'"),
        ({"scale_dtype": "bfloat16"}, "scale_dtype"),
    ],
)
def test_grids_that_cannot_be_stored_are_rejected(fields: dict, named: str) -> None:
    from onnxforge.passes.quantize.weights import QuantizeWeightsConfig

    with pytest.raises(ValueError, match=re.escape(named)):
        QuantizeWeightsConfig(**fields)


def test_bias_correction_cancels_the_mean_output_error() -> None:
    from onnxforge.passes.quantize.blockwise import quantize
    from onnxforge.passes.quantize.weights import bias_correction

    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(256, 64)) + rng.normal(0, 3.0, size=64)  # channels with large means
    weight = rng.normal(0, 0.05, size=(64, 16)).astype(np.float32)
    quantized = quantize(weight, 4, 32, False)
    bias = bias_correction(inputs.mean(axis=0), weight, quantized)
    plain = inputs @ quantized.dequantize() - inputs @ weight
    corrected = plain + bias
    np.testing.assert_allclose(corrected.mean(axis=0), 0.0, atol=1e-5)
    assert np.linalg.norm(corrected) < 0.5 * np.linalg.norm(plain)


def test_bias_correction_goes_into_matmulnbits(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "corrected"
    entry = last_log(run_recipe(llama, out, recipe(name="quantize-weights", bias_correction=True)))
    assert entry["bias_corrected"] == len(weight_matmuls(ir.load(llama / "model.onnx").graph))
    nodes = [n for n in ir.load(out / "model.onnx").graph if n.op_type == "MatMulNBits"]
    assert all(len(n.inputs) == 6 and n.inputs[5] is not None for n in nodes)
    plain = tmp_path / "plain"
    run_recipe(llama, plain, recipe(name="quantize-weights"))
    shift = np.abs(batch_logits(out) - batch_logits(plain)).max()
    assert 1e-4 < shift < 0.5 * np.abs(batch_logits(llama)).max()  # the biases are applied, and small


@pytest.mark.parametrize(
    "mode,calibrator", [("dynamic", "minmax"), ("static", "minmax"), ("static", "entropy"), ("static", "percentile")]
)
def test_int8_passes_the_checker_runs_and_stays_close(mode: str, calibrator: str, llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    manifest = run_recipe(llama, out, recipe(name="quantize-int8", mode=mode, calibrator=calibrator))
    counts = op_counts(out)
    if mode == "static":
        assert counts["QuantizeLinear"] >= 1 and counts["DequantizeLinear"] >= counts["QuantizeLinear"]
    else:
        assert counts["DynamicQuantizeLinear"] >= 1
    assert last_log(manifest)["matmuls_quantized"] == 14  # 7 projections x 2 layers; the tied lm_head stays float
    reference = batch_logits(llama)
    assert np.abs(batch_logits(out) - reference).max() < 0.1 * np.abs(reference).max()


def test_float16_keeps_float32_inputs_and_outputs(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "fp16"
    manifest = run_recipe(llama, out, recipe(name="float16"))
    model = ir.load(out / "model.onnx")
    assert all(v.dtype != ir.DataType.FLOAT16 for v in list(model.graph.inputs) + list(model.graph.outputs))
    assert any(v.const_value.dtype == ir.DataType.FLOAT16 for v in model.graph.initializers.values())
    assert last_log(manifest)["bytes_after"] < 0.55 * last_log(manifest)["bytes_before"]
    np.testing.assert_allclose(batch_logits(out), batch_logits(llama), atol=5e-3)


def calibration_increase(source: Path, folder: Path) -> float:
    """exp(mean NLL of `folder` - mean NLL of `source`) - 1 on the tests' calibration rows."""
    values = []
    for path in (source, folder):
        model = ir.external_data.load_to_model(ir.load(path / "model.onnx"))
        set_model_facts(model, json.loads((path / "onnxforge.json").read_text())["architecture"])
        values.append(Calibration.from_folder(source, SMALL_CALIBRATION).mean_nll(model, "test"))
    return math.expm1(values[1] - values[0])


def test_budget_search_respects_its_budget(mistral: Path, tmp_path: Path) -> None:
    everything_int4 = tmp_path / "int4"
    run_recipe(mistral, everything_int4, recipe(name="mixed-precision", max_ppl_increase=9.0))
    assert op_counts(everything_int4)["MatMulNBits"] == len(weight_matmuls(ir.load(mistral / "model.onnx").graph))
    full_damage = calibration_increase(mistral, everything_int4)
    assert full_damage > 0
    budget = full_damage / 3
    out = tmp_path / "mixed"
    entry = last_log(run_recipe(mistral, out, recipe(name="mixed-precision", max_ppl_increase=budget)))
    kept_higher = [unit for unit in entry["units"] if unit["precision"] != "int4"]
    assert kept_higher, "a third of the int4 damage must force some unit to int8 or float"
    assert entry["measured_ppl_increase"] <= budget
    assert calibration_increase(mistral, out) <= budget * 1.01
    assert (
        entry["bytes_after"]
        > last_log(run_recipe(mistral, tmp_path / "again", recipe(name="mixed-precision", max_ppl_increase=9.0)))[
            "bytes_after"
        ]
    )
