"""Find a decoder's pieces in an exported graph by the Hugging Face weight names the exporter keeps.

`model.layers.{i}.mlp.down_proj.weight` is the [in, out] weight of the MatMul that computes
layer i's down projection; the passes find nodes and activations from there instead of matching
node names, which change from one export to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxforge.passes.base import model_facts

_GATED_FAMILY = ("llama", "mistral", "qwen2")
_MODULE = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
}
PROJECTIONS = tuple(_MODULE)


@dataclass
class Projection:
    """A MatMul by a stored weight [in, out], with the Add of its bias when it has one."""

    layer: int
    name: str
    node: ir.Node
    weight: ir.Value
    bias: ir.Value | None

    @property
    def input(self) -> ir.Value:
        """The activation the weight multiplies."""
        return self.node.inputs[0]

    @property
    def output(self) -> ir.Value:
        """The projection's result (after the bias Add when there is one)."""
        if self.bias is None:
            return self.node.outputs[0]
        return next(use.node for use in self.bias.uses()).outputs[0]

    def array(self) -> np.ndarray:
        """The weight as a numpy array [in, out]."""
        return self.weight.const_value.numpy()


def require_gated_decoder(model: ir.Model, pass_name: str) -> dict:
    """The model facts, or ValueError when the pass does not support this architecture."""
    facts = model_facts(model)
    if facts["model_type"] not in _GATED_FAMILY:
        raise ValueError(
            f"{pass_name} supports {', '.join(_GATED_FAMILY)} decoders (q/k/v/o and gate/up/down "
            f"projections); this model is {facts['model_type']}"
        )
    if any(node.domain == "com.microsoft" for node in model.graph):
        raise ValueError(f"{pass_name} must run before fuse: put it earlier in the recipe")
    return facts


def projection(graph: ir.Graph, layer: int, name: str) -> Projection:
    """Layer `layer`'s projection `name` (q_proj ... down_proj)."""
    prefix = f"model.layers.{layer}.{_MODULE[name]}.{name}"
    weight = graph.initializers.get(f"{prefix}.weight")
    if weight is None:
        raise ValueError(f"the graph has no weight {prefix}.weight: was it exported by onnxforge?")
    matmuls = [use.node for use in weight.uses() if use.node.op_type == "MatMul" and use.idx == 1]
    if len(matmuls) != 1:
        raise ValueError(f"{prefix}.weight should feed exactly one MatMul, it feeds {len(matmuls)}")
    return Projection(layer, name, matmuls[0], weight, graph.initializers.get(f"{prefix}.bias"))


def replace_weight(value: ir.Value, array: np.ndarray) -> None:
    """Store a new array in an initializer (its shape follows)."""
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)
    value.shape = ir.Shape(array.shape)


def forget_intermediate_shapes(graph: ir.Graph) -> None:
    """Drop inferred shapes of values between nodes, after a pass changed some dimensions."""
    outputs = set(graph.outputs)
    for node in graph:
        for value in node.outputs:
            if value not in outputs:
                value.shape = None


def residual_stream(graph: ir.Graph, layer: int) -> tuple[ir.Value, ir.Value]:
    """The hidden state entering and leaving decoder layer `layer` (the residual stream)."""
    attention_add = _residual_add(projection(graph, layer, "o_proj"))
    mlp_add = _residual_add(projection(graph, layer, "down_proj"))
    attention_out = projection(graph, layer, "o_proj").output
    entering = next(v for v in attention_add.inputs if v is not attention_out)
    return entering, mlp_add.outputs[0]


def _residual_add(proj: Projection) -> ir.Node:
    adds = [use.node for use in proj.output.uses() if use.node.op_type == "Add"]
    if len(adds) != 1:
        raise ValueError(f"layer {proj.layer} {proj.name}: expected one residual Add after it, found {len(adds)}")
    return adds[0]


def check_projection_names(names: tuple[str, ...]) -> None:
    """Config check: every name is one of the decoder projections."""
    unknown = [name for name in names if name not in PROJECTIONS]
    if unknown or not names:
        raise ValueError(f"targets must list projections from {', '.join(PROJECTIONS)}, got {list(names)}")


def projections(graph: ir.Graph, layers: int, names: tuple[str, ...]) -> list[Projection]:
    """The named projections of every layer, layer by layer."""
    return [projection(graph, layer, name) for layer in range(layers) for name in names]
