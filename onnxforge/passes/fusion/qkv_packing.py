"""Pack the MatMuls that read one input (q/k/v) into one MatMul on the concatenated weight + Split.

Not a pattern rule: onnxscript would try every triple of MatMuls. A plain walk over each value's
readers finds them. GroupQueryAttention that rotates q/k itself later reads the packed MatMul
directly (`attention.read_packed_qkv`); otherwise the Split stays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_ir as ir

from onnxforge.passes.fusion.rotary import PREFIX
from onnxforge.passes.ir_utils import NodeBuilder, add_initializer, take_over


def _matmul_siblings(value: ir.Value) -> list[ir.Node] | None:
    """The MatMuls reading `value` with a constant 2-D weight, when they are its only readers."""
    users = [node for node, _ in value.uses()]
    if len({id(n) for n in users}) != len(users):
        return None
    for node in users:
        weight = node.inputs[1] if node.op_type == "MatMul" and node.inputs[0] is value else None
        if weight is None or weight.const_value is None or len(weight.shape or ()) != 2 or len(weight.uses()) != 1:
            return None
    return users


def _bias_adds(matmuls: list[ir.Node]) -> list[ir.Node] | None:
    """The Adds of a constant 1-D bias that each MatMul's output goes to, when every one has exactly that."""
    adds = []
    for node in matmuls:
        uses = node.outputs[0].uses()
        if len(uses) != 1 or uses[0][0].op_type != "Add":
            return None
        add = uses[0][0]
        bias = add.inputs[1 - uses[0][1]]
        if bias is None or bias.const_value is None or len(bias.shape or ()) != 1:
            return None
        adds.append(add)
    return adds


def _packed_name(graph: ir.Graph, first: str) -> str:
    renames = {"q_proj": "qkv_proj", "gate_proj": "gate_up_proj"}
    name = next((first.replace(old, new) for old, new in renames.items() if old in first), f"{first}.packed")
    while name in graph.initializers:
        name += "_"
    return name


def _pack(graph: ir.Graph, x: ir.Value, matmuls: list[ir.Node]) -> None:
    adds = _bias_adds(matmuls)
    ends = adds or matmuls
    weights = [node.inputs[1] for node in matmuls]
    packed = add_initializer(graph, _packed_name(graph, weights[0].name or "weight"),
                             np.concatenate([w.const_value.numpy() for w in weights], axis=1))
    add = NodeBuilder(PREFIX)
    out = add("MatMul", [x, packed], f"{packed.name}.matmul")
    if adds:
        biases = [add_node.inputs[1] if add_node.inputs[0] is matmul.outputs[0] else add_node.inputs[0]
                  for add_node, matmul in zip(adds, matmuls)]
        bias = np.concatenate([b.const_value.numpy() for b in biases])
        packed_bias = add_initializer(graph, f"{packed.name}.bias", bias)
        out = add("Add", [out, packed_bias], f"{packed.name}.add")
    widths = np.array([w.shape[1] for w in weights], np.int64)
    split = ir.node("Split", [out, add.constant(widths, f"{packed.name}.widths")], {"axis": -1},
                    num_outputs=len(weights), name=f"{PREFIX}/{packed.name}.split")
    add.nodes.append(split)
    graph.insert_before(matmuls[0], add.nodes)
    for old, new in zip((node.outputs[0] for node in ends), split.outputs):
        take_over(old, new, ".unpacked")
    graph.remove([*matmuls, *(adds or [])], safe=True)


def _values(graph: ir.Graph) -> Iterator[ir.Value]:
    yield from graph.inputs
    for node in graph:
        yield from node.outputs


def pack_sibling_matmuls(graph: ir.Graph, group_sizes: tuple[int, ...] = (3,)) -> int:
    """Pack MatMuls that share an input (in groups of these sizes) into one MatMul + Split; return how many."""
    groups = [(x, nodes) for x in _values(graph)
              if (nodes := _matmul_siblings(x)) is not None and len(nodes) in group_sizes]
    for x, nodes in groups:
        order = {node: i for i, node in enumerate(graph)}
        _pack(graph, x, sorted(nodes, key=order.__getitem__))
    return len(groups)
