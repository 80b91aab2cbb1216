"""Graph helpers every room of passes/ shares: reading constants, adding initializers, replacing values.

Written once here so that fusion, pruning and quantisation create and rewire values the same way.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def scalar(value: ir.Value | None) -> float | int | None:
    """The Python number held by a constant one-element value, else None."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is None or tensor.size != 1:
        return None
    return tensor.numpy().reshape(()).item()


def ints(value: ir.Value | None) -> list[int] | None:
    """The integers of a constant 0-D or 1-D integer value, else None."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is None or tensor.dtype not in (ir.DataType.INT64, ir.DataType.INT32):
        return None
    return [int(v) for v in tensor.numpy().reshape(-1)]


def is_graph_input(value: ir.Value | None, name: str | None = None) -> bool:
    """Whether `value` is a graph input (called `name`, when given)."""
    return value is not None and value.is_graph_input() and (name is None or value.name == name)


def static_dim(value: ir.Value, axis: int) -> int | None:
    """The size of `axis` when the inferred shape knows it as a number, else None."""
    if value.shape is None or not value.shape.rank():
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else None


def add_initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """A new initializer of `graph` holding `array` (with its shape and dtype set)."""
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, shape=ir.Shape(tensor.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def replace_weight(value: ir.Value, array: np.ndarray) -> None:
    """Store a new array in an initializer (its shape follows)."""
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)
    value.shape = ir.Shape(array.shape)


def take_over(old: ir.Value, new: ir.Value, old_suffix: str = ".replaced") -> None:
    """Let `new` take `old`'s place: its readers, its graph-output slot, its name, type and shape."""
    name, new.type, new.shape = old.name, old.type, old.shape
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    old.name = f"{name}{old_suffix}"
    new.name = name


def replace_node(graph: ir.Graph, old: ir.Node, new: ir.Node) -> None:
    """Put `new` where `old` was, its first output taking over `old`'s."""
    graph.insert_before(old, new)
    take_over(old.outputs[0], new.outputs[0])
    graph.remove(old, safe=True)


def forget_intermediate_shapes(graph: ir.Graph) -> None:
    """Drop inferred shapes of values between nodes, after a pass changed some dimensions."""
    outputs = set(graph.outputs)
    for node in graph:
        for value in node.outputs:
            if value not in outputs:
                value.shape = None


class NodeBuilder:
    """Collects new nodes with named outputs (`prefix/name`), to insert them into a graph in one go."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[ir.Node] = []

    def __call__(self, op_type: str, inputs: list[ir.Value | None], name: str, **attributes) -> ir.Value:
        """Add one node; returns its (first) output, named `prefix.name`."""
        node = ir.node(op_type, inputs, attributes, name=f"{self.prefix}/{name}")
        node.outputs[0].name = f"{self.prefix}.{name}"
        self.nodes.append(node)
        return node.outputs[0]

    def constant(self, array: np.ndarray, name: str) -> ir.Value:
        """A Constant node holding `array`."""
        return self("Constant", [], name, value=ir.tensor(array, name=f"{self.prefix}.{name}"))
