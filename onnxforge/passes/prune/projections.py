"""Find a decoder's pieces in an exported graph by the Hugging Face weight names the exporter keeps.

`model.layers.{i}.mlp.down_proj.weight` is the [in, out] weight of the MatMul that computes
layer i's down projection (the name comes from the model's row in the architecture table); the
passes find nodes and activations from there instead of matching node names, which change from
one export to the next. `StructuralPass` is the base of every pass that cuts these projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxforge.errors import ConfigError
from onnxforge.models.architectures import ARCHITECTURES, GATED_MLP, LLAMA_ATTENTION, cut_by_names
from onnxforge.passes.base import PassRefused, is_fused, model_facts
from onnxforge.passes.calibration import CalibratedPass
from onnxforge.passes.ir_utils import add_initializer, replace_weight

PROJECTIONS = LLAMA_ATTENTION + GATED_MLP


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
        return self.bias_add.outputs[0]

    @property
    def bias_add(self) -> ir.Node:
        """The Add of the bias on this MatMul's result (the bias may be shared with other layers' Adds)."""
        return next(use.node for use in self.node.outputs[0].uses()
                    if use.node.op_type == "Add" and self.bias in use.node.inputs)

    def array(self) -> np.ndarray:
        """The weight as a numpy array [in, out]."""
        return self.weight.const_value.numpy()


class StructuralPass(CalibratedPass):
    """A pass that cuts q/k/v/o and gate/up/down projections: on the rows that list it, before fuse."""

    def requires(self, model: ir.Model) -> None:
        model_type = model_facts(model)["model_type"]
        arch = ARCHITECTURES.get(model_type)
        if arch is None or self.name not in arch.cut_by:
            raise self.refuse(
                f"supports {', '.join(cut_by_names(self.name))} models (q/k/v/o and gate/up/down "
                f"projections); this model is {model_type}"
            )
        if is_fused(model):
            raise self.refuse("must run before fuse: put it earlier in the recipe")


def projection(model: ir.Model, layer: int, name: str) -> Projection:
    """Layer `layer`'s projection `name` (q_proj ... down_proj), found by its weight name."""
    weight_name = ARCHITECTURES[model_facts(model)["model_type"]].weight_name(layer, name)
    graph = model.graph
    weight = graph.initializers.get(weight_name)
    if weight is None:
        raise PassRefused(f"the graph has no weight {weight_name}: was it exported by onnxforge?")
    matmuls = [use.node for use in weight.uses() if use.node.op_type == "MatMul" and use.idx == 1]
    if len(matmuls) != 1:
        raise ValueError(f"{weight_name} should feed exactly one MatMul, it feeds {len(matmuls)}")
    bias = graph.initializers.get(weight_name.removesuffix(".weight") + ".bias") or _bias_by_structure(matmuls[0])
    return Projection(layer, name, matmuls[0], weight, bias)


def _bias_by_structure(matmul: ir.Node) -> ir.Value | None:
    """The constant [out] an Add puts on the MatMul's result: a bias whose name the exporter dropped (equal
    biases, zeros in a random model, are merged into one initializer)."""
    uses = list(matmul.outputs[0].uses())
    if len(uses) != 1 or uses[0].node.op_type != "Add":
        return None
    other = uses[0].node.inputs[1 - uses[0].idx]
    is_vector = other is not None and other.const_value is not None and len(other.const_value.shape) == 1
    return other if is_vector and other.is_initializer() else None


def slice_bias(graph: ir.Graph, proj: Projection, kept: np.ndarray) -> None:
    """Keep the bias entries `kept`; a bias other nodes share (merged equal constants) gets its own copy first."""
    array = proj.bias.const_value.numpy()[kept]
    if len(list(proj.bias.uses())) == 1:
        replace_weight(proj.bias, array)
        return
    add = proj.bias_add
    name = proj.weight.name.removesuffix(".weight") + ".bias"
    if name in graph.initializers:  # the shared value carries this layer's name: it keeps serving the others
        graph.initializers[name].name = f"{name}.shared"
    own = add_initializer(graph, name, array)
    add.replace_input_with(list(add.inputs).index(proj.bias), own)
    proj.bias = own


def residual_stream(model: ir.Model, layer: int) -> tuple[ir.Value, ir.Value]:
    """The hidden state entering and leaving layer `layer` (the residual stream; after the closing norm of a
    post-norm layer)."""
    attention_add = _residual_add(projection(model, layer, "o_proj"))
    mlp_add = _residual_add(projection(model, layer, "down_proj"))
    attention_out = projection(model, layer, "o_proj").output
    entering = next(v for v in attention_add.inputs if v is not attention_out)
    if not ARCHITECTURES[model_facts(model)["model_type"]].post_norm:
        return entering, mlp_add.outputs[0]
    norms = [use.node for use in mlp_add.outputs[0].uses() if use.node.op_type == "LayerNormalization"]
    if len(norms) != 1:
        raise ValueError(f"layer {layer}: expected one LayerNormalization after the MLP residual, found {len(norms)}")
    return entering, norms[0].outputs[0]


def _residual_add(proj: Projection) -> ir.Node:
    adds = [use.node for use in proj.output.uses() if use.node.op_type == "Add"]
    if len(adds) != 1:
        raise ValueError(f"layer {proj.layer} {proj.name}: expected one residual Add after it, found {len(adds)}")
    return adds[0]


def check_projection_names(names: tuple[str, ...]) -> None:
    """Config check: every name is one of the decoder projections."""
    unknown = [name for name in names if name not in PROJECTIONS]
    if unknown or not names:
        raise ConfigError(f"targets must list projections from {', '.join(PROJECTIONS)}, got {list(names)}")


def projections(model: ir.Model, names: tuple[str, ...]) -> list[Projection]:
    """The named projections of every layer that the architecture has, layer by layer."""
    facts = model_facts(model)
    present = [name for name in names if ARCHITECTURES[facts["model_type"]].has(name)]
    return [projection(model, layer, name) for layer in range(facts["num_layers"]) for name in present]
