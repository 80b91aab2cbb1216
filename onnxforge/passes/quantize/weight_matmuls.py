"""The weight MatMuls of any exported graph (fused or not) and the embedding lookup tied to them.

A weight MatMul multiplies an activation by a constant 2-D initializer W [K, N], or by the
transpose of one (the tied lm_head reads the embedding table [vocab, hidden] through a Transpose).
Rotary position MatMuls (K = 1) are not weights worth quantising and are left out, and so are the
small MatMuls a grid with offsets adds (block sums, offset terms): quantising them would break the
grid they keep exact.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re

import numpy as np
import onnx_ir as ir

_LAYER = re.compile(r"layers\.(\d+)\.")
MIN_K = 16
BLOCK_INDICATOR_PREFIX, OFFSETS_SUFFIX = "block_indicator.", ".offsets"  # the names of those helpers' constants


@dataclasses.dataclass(frozen=True)
class WeightMatMul:
    """A MatMul node and the initializer it multiplies by (stored [N, K] when `transposed`)."""

    node: ir.Node
    weight: ir.Value
    transposed: bool

    @property
    def name(self) -> str:
        """The weight's name: `model.layers.3.mlp.down_proj.weight`, `lm_head.weight`..."""
        return self.weight.name or ""

    @property
    def layer(self) -> int | None:
        """The decoder layer the weight belongs to (None for lm_head)."""
        found = _LAYER.search(self.name)
        return int(found.group(1)) if found else None

    @property
    def input(self) -> ir.Value:
        """The activation the weight multiplies."""
        return self.node.inputs[0]

    def array(self) -> np.ndarray:
        """W as [K, N] float32."""
        values = self.weight.const_value.numpy()
        return np.ascontiguousarray(values.T if self.transposed else values, dtype=np.float32)


def weight_matmuls(graph: ir.Graph) -> list[WeightMatMul]:
    """Every MatMul whose second input is a float initializer [K >= 16, N] or its transpose."""
    found = []
    for node in graph:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        operand = node.inputs[1]
        if _grid_helper(operand):
            continue
        if _float_matrix(operand):
            if operand.const_value.shape[0] >= MIN_K:
                found.append(WeightMatMul(node, operand, False))
            continue
        producer = operand.producer()
        if producer is not None and producer.op_type == "Transpose" and _float_matrix(producer.inputs[0]):
            perm = producer.attributes.get_ints("perm", [1, 0])
            if list(perm) == [1, 0] and producer.inputs[0].const_value.shape[1] >= MIN_K:
                found.append(WeightMatMul(node, producer.inputs[0], True))
    return found


def _grid_helper(value: ir.Value | None) -> bool:
    name = (value.name or "") if value is not None else ""
    return name.startswith(BLOCK_INDICATOR_PREFIX) or name.endswith(OFFSETS_SUFFIX)


def _float_matrix(value: ir.Value | None) -> bool:
    return (
        value is not None
        and value.is_initializer()
        and value.const_value is not None
        and value.const_value.dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16)
        and len(value.const_value.shape) == 2
    )


def embedding_lookup(graph: ir.Graph) -> ir.Node | None:
    """The Gather that reads the token embedding table (an initializer) with input_ids."""
    for node in graph:
        if node.op_type == "Gather" and _float_matrix(node.inputs[0]) and node.inputs[1].name == "input_ids":
            return node
    return None


def select(weights: list[WeightMatMul], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[WeightMatMul]:
    """The weights whose names match one of `include` (all when empty) and none of `exclude` (globs)."""

    def matches(name: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    return [w for w in weights if (not include or matches(w.name, include)) and not matches(w.name, exclude)]
