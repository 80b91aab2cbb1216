"""The oldest ONNX Runtime release that loads a graph: its IR version, opset imports and contrib ops.

Measured by loading graphs in the official CPU wheels 1.16.2 to 1.32.0 (and onnxruntime-web,
whose WASM build accepts exactly what the native release of the same number does): a release
refuses a newer IR or opset import, an operator it lacks, more inputs than its schema has (empty
trailing inputs count) and attributes it does not know. Each rule below is the first release that
accepts the feature on the CPU execution provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx_ir as ir

from onnxforge.folder import MS_DOMAIN

OLDEST = (1, 16)

IR_SINCE = {9: (1, 16), 10: (1, 18), 11: (1, 23), 12: (1, 24), 13: (1, 24), 14: (1, 32)}
OPSET_SINCE = {19: (1, 16), 20: (1, 17), 21: (1, 18), 22: (1, 21), 23: (1, 23), 24: (1, 24), 25: (1, 24),
               26: (1, 25), 27: (1, 32), 28: (1, 32)}

# contrib op -> first release with a float CPU kernel
OP_SINCE = {
    "DynamicQuantizeMatMul": (1, 16), "MatMulIntegerToFloat": (1, 16), "QuickGelu": (1, 16),
    "MultiHeadAttention": (1, 16), "SkipSimplifiedLayerNormalization": (1, 16), "RotaryEmbedding": (1, 16),
    "MatMulNBits": (1, 16), "GroupQueryAttention": (1, 18), "GatherBlockQuantized": (1, 20),
    "SkipLayerNormalization": (1, 16), "FastGelu": (1, 16), "BiasGelu": (1, 16),
}
# contrib op -> {number of inputs (trailing empty ones included): first release whose schema has that many}
INPUTS_SINCE = {
    "GroupQueryAttention": {9: (1, 18), 11: (1, 22), 12: (1, 23), 14: (1, 25), 16: (1, 28), 17: (1, 32)},
    "MatMulNBits": {5: (1, 18), 6: (1, 19)},
    "MultiHeadAttention": {10: (1, 22)},
}
# (contrib op, attribute) -> first release that knows the attribute
ATTRIBUTE_SINCE = {
    ("GroupQueryAttention", "do_rotary"): (1, 18), ("GroupQueryAttention", "local_window_size"): (1, 18),
    ("GroupQueryAttention", "rotary_interleaved"): (1, 18), ("GroupQueryAttention", "smooth_softmax"): (1, 19),
    ("GroupQueryAttention", "softcap"): (1, 20), ("GroupQueryAttention", "qk_output"): (1, 23),
    ("GroupQueryAttention", "k_quant_type"): (1, 25), ("GroupQueryAttention", "v_quant_type"): (1, 25),
    ("GroupQueryAttention", "kv_cache_bit_width"): (1, 25), ("GroupQueryAttention", "qk_norm_epsilon"): (1, 28),
    ("GroupQueryAttention", "sliding_window_cache"): (1, 29), ("GroupQueryAttention", "causal"): (1, 30),
    ("GroupQueryAttention", "q_norm_epsilon"): (1, 32), ("GroupQueryAttention", "k_norm_epsilon"): (1, 32),
    ("MatMulNBits", "accuracy_level"): (1, 17), ("MatMulNBits", "weight_prepacked"): (1, 28),
    ("GatherBlockQuantized", "bits"): (1, 23),
    ("RotaryEmbedding", "num_heads"): (1, 17), ("RotaryEmbedding", "rotary_embedding_dim"): (1, 17),
    ("RotaryEmbedding", "is_packed_batching"): (1, 19),
}
FLOAT16_KERNELS_SINCE = (1, 20)  # GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayerNormalization, MatMulNBits
FLOAT16_KERNEL_OPS = ("GroupQueryAttention", "RotaryEmbedding", "SkipSimplifiedLayerNormalization", "MatMulNBits")


@dataclass(frozen=True)
class Requirement:
    """One thing in the graph and the first ONNX Runtime release that accepts it."""

    version: tuple[int, int]
    what: str

    def to_json(self) -> dict[str, str]:
        """{"onnxruntime": "1.32", "for": "..."}."""
        return {"onnxruntime": version_text(self.version), "for": self.what}


def version_text(version: tuple[int, int]) -> str:
    """(1, 32) -> '1.32'."""
    return f"{version[0]}.{version[1]}"


def parse_version(text: str) -> tuple[int, int]:
    """'1.30' or '1.30.0' -> (1, 30); ValueError on anything else."""
    parts = text.split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts[:3]):
        raise ValueError(f"not an ONNX Runtime version: {text!r} (write it as 1.30)")
    return int(parts[0]), int(parts[1])


def minimum_version(model: ir.Model) -> tuple[tuple[int, int], list[Requirement]]:
    """The oldest release that loads `model`, and the requirements that decide it (newest first)."""
    found = list(_requirements(model))
    version = max([OLDEST, *(r.version for r in found)])
    deciding = sorted({r for r in found if r.version > OLDEST}, key=lambda r: (r.version, r.what), reverse=True)
    return version, deciding


def unknown_ops(model: ir.Model) -> list[str]:
    """Contrib (com.microsoft) operators this table does not know: the minimum version cannot vouch for them."""
    return sorted({node.op_type for node in _nodes(model) if node.domain == MS_DOMAIN and node.op_type not in OP_SINCE})


def _requirements(model: ir.Model) -> Iterator[Requirement]:
    yield from _table_lookup(IR_SINCE, model.ir_version, f"IR version {model.ir_version}")
    opset = model.opset_imports.get("", None)
    if opset is not None:
        yield from _table_lookup(OPSET_SINCE, opset, f"ai.onnx opset {opset}")
    for node in _nodes(model):
        if node.domain == MS_DOMAIN:
            yield from _contrib_requirements(node)


def _contrib_requirements(node: ir.Node) -> Iterator[Requirement]:
    op = node.op_type
    if op in OP_SINCE:
        yield Requirement(OP_SINCE[op], op)
    inputs = len(node.inputs)
    needed = [version for count, version in INPUTS_SINCE.get(op, {}).items() if inputs >= count]
    if needed:
        yield Requirement(max(needed), f"{op} with {inputs} inputs")
    for name in node.attributes:
        if (op, name) in ATTRIBUTE_SINCE:
            yield Requirement(ATTRIBUTE_SINCE[(op, name)], f"{op} attribute {name}")
    if op == "MatMulNBits" and node.attributes.get_int("bits", 4) == 8:
        yield Requirement((1, 23), "MatMulNBits with bits=8")
    if op == "MatMulNBits" and len(node.inputs) > 3 and _dtype(node.inputs[3]) not in (None, ir.DataType.UINT8):
        yield Requirement((1, 18), "MatMulNBits with float zero points")
    if op == "GatherBlockQuantized" and _dtype(node.inputs[0]) == ir.DataType.UINT8:
        yield Requirement((1, 22), "GatherBlockQuantized on packed uint8 data")
    if op in FLOAT16_KERNEL_OPS and _dtype(node.inputs[0]) == ir.DataType.FLOAT16:
        yield Requirement(FLOAT16_KERNELS_SINCE, f"{op} in float16")


def _table_lookup(table: dict[int, tuple[int, int]], key: int, what: str) -> Iterator[Requirement]:
    known = [version for number, version in table.items() if number <= key]
    if key > max(table):
        yield Requirement((99, 0), f"{what} (newer than any release this table knows)")
    elif known:
        yield Requirement(max(known), what)


def _dtype(value: ir.Value | None) -> ir.DataType | None:
    return value.dtype if value is not None else None


def _nodes(model: ir.Model) -> Iterator[ir.Node]:
    yield from ir.traversal.RecursiveGraphIterator(model.graph)
    for function in model.functions.values():
        yield from function
