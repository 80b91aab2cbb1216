"""Weight-only quantisation (int4 / int8, block-wise) of every weight MatMul and the embedding.

Two storage forms, both ONNX Runtime kernels rather than our own:
- `matmulnbits`: com.microsoft MatMulNBits (packed codes, the fast CPU/GPU path). When lm_head
  shares the embedding table (tied weights), the lookup becomes GatherBlockQuantized reading
  lm_head's packed codes, scales and zero points, so the table is stored once, quantised.
- `qdq`: opset-21 block-wise DequantizeLinear in front of a plain MatMul / Gather (portable; the
  tied table is one DequantizeLinear feeding both the lookup and lm_head).
Offsets (`zero_point = "offset"`) are applied as one small MatMul of the input's block sums (a
MatMul by a 0/1 matrix, shared by the weights that read the same input) and an Add; float16
scales and offsets (`scale_dtype`) are stored half-size and cast back by a Cast that ONNX
Runtime folds when it loads the model.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from onnxforge.errors import ConfigError
from onnxforge.folder import MS_DOMAIN
from onnxforge.passes.base import PassConfig, PassRefused, check_choice
from onnxforge.passes.calibration import CalibratedPass
from onnxforge.passes.ir_utils import add_initializer, replace_node
from onnxforge.passes.quantize.blockwise import METHODS, ZERO_POINTS, BlockQuantized, on_grid, pack_rows, quantize
from onnxforge.passes.quantize.weight_matmuls import (
    BLOCK_INDICATOR_PREFIX,
    OFFSETS_SUFFIX,
    WeightMatMul,
    embedding_lookup,
    select,
    weight_matmuls,
)

FORMATS = ("matmulnbits", "qdq")
SCALE_DTYPES = ("float32", "float16")
_BLOCKWISE_DQ_OPSET = 21


@dataclasses.dataclass(frozen=True)
class QuantizeWeightsConfig(PassConfig):
    """Bits, block size, grid and rounding method, storage form, and which weights (globs on names)."""

    bits: int = 4
    block_size: int = 32
    symmetric: bool = False
    method: str = "rtn"
    zero_point: str = "integer"
    format: str = "matmulnbits"
    accuracy_level: int = 4
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    embedding: bool = True
    bias_correction: bool = False
    scale_dtype: str = "float32"

    def validate(self) -> None:
        if self.bits not in (4, 8):
            raise ConfigError(f"bits must be 4 or 8, got {self.bits!r}")
        if self.block_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"block_size must be one of 16, 32, 64, 128, 256, got {self.block_size!r}")
        check_choice("method", self.method, METHODS)
        check_choice("zero_point", self.zero_point, ZERO_POINTS)
        check_choice("format", self.format, FORMATS)
        check_choice("scale_dtype", self.scale_dtype, SCALE_DTYPES)
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ConfigError(f"accuracy_level must be 0 to 4 (MatMulNBits compute type), got {self.accuracy_level!r}")
        kept_grid = self.zero_point != "integer"
        if kept_grid and (self.symmetric or self.format != "matmulnbits" or self.method not in ("rtn", "gguf")):
            raise ConfigError(
                f"zero_point = {self.zero_point!r} needs symmetric = false, format = 'matmulnbits'"
                " and method = 'rtn' or 'gguf'"
            )
        if self.method == "gguf" and not self.symmetric and not kept_grid:
            raise ConfigError("method = 'gguf' keeps an asymmetric grid only with zero_point = 'offset' or 'float'")
        if self.scale_dtype == "float16" and self.format != "matmulnbits":
            raise ConfigError("scale_dtype = 'float16' needs format = 'matmulnbits'")
        if self.bias_correction and self.format != "matmulnbits":
            raise ConfigError("bias_correction needs format = 'matmulnbits' (it uses MatMulNBits' bias input)")


class QuantizeWeightsPass(CalibratedPass):
    """Replace weight MatMuls (and the embedding lookup) by their block-quantised forms."""

    name = "quantize-weights"
    config_class = QuantizeWeightsConfig
    summary = (
        "weight-only int4/int8 block quantisation (MatMulNBits or block-wise DequantizeLinear), embedding included"
    )

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        config: QuantizeWeightsConfig = self.config
        log = self.log(model)
        chosen = select(weight_matmuls(model.graph), config.include, config.exclude)
        if not chosen:
            raise PassRefused("no weight MatMul matches include/exclude: nothing to quantise")
        grams = (
            self.input_statistics(model, chosen, "input_covariances", "Gram matrices")
            if config.method == "gptq"
            else []
        )
        grid_count = sum(on_grid(w.array(), config.bits, config.block_size) for w in chosen)  # GGUF-dequantised
        plan = [(w, quantize_weight(w, config, gram)) for w, gram in zip(chosen, grams or [None] * len(chosen))]
        biases = self._bias_corrections(model, plan) if config.bias_correction else {}
        exact = sum(np.array_equal(q.dequantize(), w.array()) for w, q in plan)
        embedding = write_quantized(
            model, plan, config.format, config.accuracy_level, config.embedding, biases, config.scale_dtype
        )
        details = {"weights_quantized": len(plan), "embedding": embedding, "bias_corrected": len(biases)}
        details["weights_kept_bit_for_bit"] = int(exact)
        if config.scale_dtype == "float16":
            details["weights_with_float16_exact_scales"] = sum(_float16_exact(q) for _, q in plan)
        details[f"weights_already_on_a_{config.bits}bit_grid"] = grid_count
        details["kept_float"] = [w.name for w in weight_matmuls(model.graph)]
        log.write(**details)
        return ir.passes.PassResult(model, modified=True)

    def _bias_corrections(self, model: ir.Model, plan: list[tuple[WeightMatMul, BlockQuantized]]) -> dict:
        """Per weight, the bias that cancels its quantisation error on the mean calibration input."""
        means = self.input_statistics(model, [w for w, _ in plan], "channel_means", "input means (bias correction)")
        return {w.name: bias_correction(mean, w.array(), q) for (w, q), mean in zip(plan, means)}


def bias_correction(mean: np.ndarray, weight: np.ndarray, quantized: BlockQuantized) -> np.ndarray:
    """-(E[x] @ (W_quantised - W)): added as a bias, the output's mean is what it was in float."""
    return (-(mean @ (quantized.dequantize().astype(np.float64) - weight))).astype(np.float32)


def _float16_exact(quantized: BlockQuantized) -> bool:
    """Whether the scales and offsets lose nothing stored as float16."""
    arrays = [quantized.scales] + ([quantized.offsets] if quantized.offsets is not None else [])
    return all(np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in arrays)


def quantize_weight(weight: WeightMatMul, config: QuantizeWeightsConfig, gram: np.ndarray | None) -> BlockQuantized:
    """One weight's block-quantised codes under `config`."""
    return quantize(
        weight.array(),
        config.bits,
        config.block_size,
        config.symmetric,
        config.method,
        gram,
        config.zero_point,
    )


def write_quantized(
    model: ir.Model,
    plan: list[tuple[WeightMatMul, BlockQuantized]],
    form: str,
    accuracy_level: int = 4,
    embedding: bool = True,
    biases: dict[str, np.ndarray] | None = None,
    scale_dtype: str = "float32",
) -> str:
    """Rewrite the graph for `plan` in storage `form`; return what happened to the embedding lookup."""
    graph = model.graph
    lookup = embedding_lookup(graph) if embedding else None
    if form == "qdq":
        model.opset_imports[""] = max(model.opset_imports.get("", 1), _BLOCKWISE_DQ_OPSET)
    else:
        model.opset_imports.setdefault(MS_DOMAIN, 1)
    result = "float (not quantised)"
    block_sums: dict[ir.Value, ir.Value] = {}
    for weight, quantized in plan:
        reads_table = lookup is not None and lookup.inputs[0] is weight.weight
        if form == "qdq":
            dequantized = _dequantize_node(graph, weight.weight, weight.transposed, quantized)
            weight.weight.replace_all_uses_with(dequantized.outputs[0])  # a tied table: the lookup reads it too
            result = (
                f"Gather on the DequantizeLinear shared with lm_head ({quantized.bits}-bit)" if reads_table else result
            )
            continue
        stored = _nbits_initializers(graph, weight.name, quantized, scale_dtype)
        if biases and weight.name in biases:
            stored["bias"] = add_initializer(graph, f"{weight.name}.bias_correction", biases[weight.name])
        product = _matmulnbits(weight, quantized, stored, accuracy_level)
        if "offsets" in stored:
            product = _plus_offsets(graph, weight, product, stored["offsets"], quantized, block_sums)
        replace_node(graph, weight.node, product)
        if reads_table and weight.transposed:
            result = _share_with_lookup(graph, lookup, quantized, stored, "lm_head's")
    if lookup is not None and lookup.graph is not None and _is_float_table(lookup.inputs[0]):
        result = _own_table(graph, lookup, form, plan[0][1].bits, plan[0][1].block)
    _drop_unused(model)
    return result


def _is_float_table(value: ir.Value) -> bool:
    return value.is_initializer() and value.const_value is not None and value.const_value.dtype == ir.DataType.FLOAT


def _own_table(graph: ir.Graph, lookup: ir.Node, form: str, bits: int, block: int) -> str:
    """Quantise an embedding table nobody quantised yet (untied, or lm_head left float) for the lookup alone."""
    table = lookup.inputs[0]
    quantized = quantize(table.const_value.numpy().T, bits, block, symmetric=False)
    if form == "qdq":
        dequantized = _dequantize_node(graph, table, True, quantized)
        lookup.replace_input_with(0, dequantized.outputs[0])
        return f"Gather on its own {bits}-bit DequantizeLinear"
    stored = _nbits_initializers(graph, f"{table.name or 'embedding'}.lookup", quantized)
    return _share_with_lookup(graph, lookup, quantized, stored, "its own")


def _nbits_initializers(
    graph: ir.Graph, stem: str, quantized: BlockQuantized, scale_dtype: str = "float32"
) -> dict[str, ir.Value]:
    """Packed codes [N, K_padded * bits / 8], scales [N, blocks], zero points (omitted when symmetric)
    and offsets [blocks, N] (when the grid has them)."""
    n, padded = quantized.codes.shape
    packed = pack_rows(quantized.codes, quantized.bits).reshape(n, padded // quantized.block, -1)
    stored = {
        "codes": add_initializer(graph, f"{stem}.q{quantized.bits}", packed),
        "scales": _float_constant(graph, f"{stem}.scales", quantized.scales, scale_dtype),
    }
    if quantized.float_zeros:
        stored["zeros"] = add_initializer(graph, f"{stem}.zeros", quantized.zeros.astype(np.float32))
    elif np.any(quantized.zeros != quantized.symmetric_zero):
        stored["zeros"] = add_initializer(graph, f"{stem}.zeros", pack_rows(quantized.zeros, quantized.bits))
    if quantized.offsets is not None:
        stored["offsets"] = _float_constant(graph, f"{stem}{OFFSETS_SUFFIX}", quantized.offsets.T, scale_dtype)
    return stored


def _float_constant(graph: ir.Graph, name: str, array: np.ndarray, dtype: str) -> ir.Value:
    """A float32 constant, stored as float16 behind a Cast when `dtype` is float16."""
    if dtype == "float32":
        return add_initializer(graph, name, array.astype(np.float32))
    half = add_initializer(graph, f"{name}.f16", array.astype(np.float16))
    cast = _node_named("Cast", [half], name, {"to": ir.DataType.FLOAT})
    graph.insert_before(next(iter(graph)), cast)
    return cast.outputs[0]


def _block_indicator(graph: ir.Graph, quantized: BlockQuantized) -> ir.Value:
    """The 0/1 matrix [K, blocks] that says which block each of K's positions is in (one per shape)."""
    k, block = quantized.k, quantized.block
    name = f"{BLOCK_INDICATOR_PREFIX}{k}x{block}"
    if name not in graph.initializers:
        blocks = np.arange(k) // block
        add_initializer(graph, name, (blocks[:, None] == np.arange(-(-k // block))).astype(np.float32))
    return graph.initializers[name]


def _node_named(op_type: str, inputs: list, name: str, attributes: dict | None = None) -> ir.Node:
    """A default-domain node whose one output is called `name`."""
    node = ir.node(op_type, inputs, attributes or {}, name=name)
    node.outputs[0].name = name
    return node


def _plus_offsets(
    graph: ir.Graph,
    weight: WeightMatMul,
    product: ir.Node,
    offsets: ir.Value,
    quantized: BlockQuantized,
    block_sums: dict[ir.Value, ir.Value],
) -> ir.Node:
    """product + (the input's block sums) @ offsets [blocks, N]: the grid's offsets, exactly."""
    product.outputs[0].name = f"{weight.name}.without_offsets"
    graph.insert_before(weight.node, product)
    if weight.input not in block_sums:
        indicator = _block_indicator(graph, quantized)
        sums = _node_named("MatMul", [weight.input, indicator], f"{weight.input.name}.block_sums")
        graph.insert_before(weight.node, sums)
        block_sums[weight.input] = sums.outputs[0]
    correction = _node_named("MatMul", [block_sums[weight.input], offsets], f"{weight.name}.offset_terms")
    graph.insert_before(weight.node, correction)
    return ir.node("Add", [product.outputs[0], correction.outputs[0]], name=f"{weight.name}.plus_offsets")


def _lookup_plus_offsets(
    graph: ir.Graph, lookup: ir.Node, gather: ir.Node, offsets: ir.Value, quantized: BlockQuantized
) -> ir.Node:
    """gather + each token's row of offsets spread over its blocks (offsets [blocks, N] read by row)."""
    gather.outputs[0].name = "embedding.without_offsets"
    indicator = _block_indicator(graph, quantized)
    rows = _node_named("Transpose", [offsets], "embedding.offset_rows", {"perm": [1, 0]})
    spread = _node_named("Transpose", [indicator], f"{indicator.name}.transposed", {"perm": [1, 0]})
    picked = _node_named("Gather", [rows.outputs[0], lookup.inputs[1]], "embedding.token_offsets")
    terms = _node_named("MatMul", [picked.outputs[0], spread.outputs[0]], "embedding.offset_terms")
    for node in (gather, rows, spread, picked, terms):
        graph.insert_before(lookup, node)
    return ir.node("Add", [gather.outputs[0], terms.outputs[0]], name="embedding.plus_offsets")


def _matmulnbits(
    weight: WeightMatMul, quantized: BlockQuantized, stored: dict[str, ir.Value], accuracy_level: int
) -> ir.Node:
    inputs = [weight.input, stored["codes"], stored["scales"], stored.get("zeros")]
    inputs += [None, stored["bias"]] if "bias" in stored else []  # bias is input 5, after g_idx
    while inputs[-1] is None:
        inputs.pop()
    n = quantized.codes.shape[0]
    return ir.node(
        "MatMulNBits",
        inputs,
        attributes={
            "K": quantized.k,
            "N": n,
            "bits": quantized.bits,
            "block_size": quantized.block,
            "accuracy_level": accuracy_level,
        },
        domain=MS_DOMAIN,
        name=f"{weight.name}.matmulnbits",
    )


def _share_with_lookup(
    graph: ir.Graph, lookup: ir.Node, quantized: BlockQuantized, stored: dict[str, ir.Value], whose: str
) -> str:
    """Point the embedding lookup at packed codes through GatherBlockQuantized (when rows are whole)."""
    if quantized.float_zeros:
        return "float (GatherBlockQuantized takes integer zero points only)"
    if quantized.codes.shape[1] != quantized.k:
        return f"float (hidden size {quantized.k} is not a multiple of block {quantized.block})"
    codes = stored["codes"]
    row_shape = add_initializer(graph, f"{codes.name}.rows", np.array([codes.const_value.shape[0], -1], np.int64))
    rows = ir.node("Reshape", [codes, row_shape], name="embedding.codes_as_rows")
    graph.insert_before(lookup, rows)
    inputs = [rows.outputs[0], lookup.inputs[1], stored["scales"]] + ([stored["zeros"]] if "zeros" in stored else [])
    attributes = {"bits": quantized.bits, "block_size": quantized.block, "gather_axis": 0, "quantize_axis": 1}
    gather = ir.node("GatherBlockQuantized", inputs, attributes, domain=MS_DOMAIN, name="embedding.gather_quantized")
    if "offsets" in stored:
        gather = _lookup_plus_offsets(graph, lookup, gather, stored["offsets"], quantized)
    replace_node(graph, lookup, gather)
    return f"GatherBlockQuantized on {whose} {quantized.bits}-bit codes"


def _dequantize_node(graph: ir.Graph, weight: ir.Value, transposed: bool, quantized: BlockQuantized) -> ir.Node:
    """DequantizeLinear of the codes in the weight's stored orientation ([K, N], or [N, K] when transposed)."""
    name = weight.name
    codes, scales, zeros = quantized.codes[:, : quantized.k], quantized.scales, quantized.zeros
    symmetric = not np.any(zeros != quantized.symmetric_zero)
    signed = codes.astype(np.int16) - quantized.symmetric_zero if symmetric else codes
    kind = {(4, True): ml_dtypes.int4, (4, False): ml_dtypes.uint4, (8, True): np.int8, (8, False): np.uint8}
    dtype = kind[(quantized.bits, symmetric)]
    axis = 1 if transposed else 0
    orient = (lambda a: a) if transposed else (lambda a: np.ascontiguousarray(a.T))
    inputs = [
        add_initializer(graph, f"{name}.q{quantized.bits}", orient(signed).astype(dtype)),
        add_initializer(graph, f"{name}.scales", orient(scales)),
    ]
    if not symmetric:
        inputs.append(add_initializer(graph, f"{name}.zeros", orient(zeros).astype(dtype)))
    node = ir.node(
        "DequantizeLinear",
        inputs,
        attributes={"axis": axis, "block_size": quantized.block},
        name=f"{name}.dequantize",
    )
    graph.insert_before(next(iter(graph)), node)
    node.outputs[0].name = f"{name}.dequantized"
    return node


def _drop_unused(model: ir.Model) -> None:
    """Remove nodes and float initializers that nothing reads any more (the replaced weights)."""
    common_passes.RemoveUnusedNodesPass()(model)
    graph = model.graph
    for name in [
        name for name, value in graph.initializers.items() if not value.uses() and not value.is_graph_output()
    ]:
        del graph.initializers[name]
