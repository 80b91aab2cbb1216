"""Cleanup: onnxscript's optimizer pipeline without its one slow rule (run after export and in recipes).

`torch.onnx.export(optimize=True)` spends ~30 s of its ~35 s on the default model in the
SlicesSplit rewrite (its matcher walks the whole graph for every candidate node). The same
pipeline with that rule left out folds constants and removes no-ops in ~5 s.

Two rules of our own, both plain ONNX:
- `x * Reciprocal(y)` becomes `x / y`. torch writes rsqrt as Reciprocal(Sqrt), which hides RMSNorm
  from ONNX Runtime's own SimplifiedLayerNormalization fusion (it looks for Pow, ReduceMean, Add,
  Sqrt, Div); in the Div form ONNX Runtime fuses every RMSNorm when it loads the model.
- The exporter's attention transposes the key for any rank by flattening to 3-D, transposing and
  reshaping back (Shape, three Slices, two Concats, two Reshapes, a Transpose: ~8 nodes per layer,
  run at every decode step). When inferred shapes show it is a swap of the last two axes, it
  becomes one Transpose.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import optimizer, rewriter
from onnxscript.rewriter import pattern
from onnxscript.rewriter.rules import common as rules

from onnxforge.passes.base import OnnxforgePass, PassConfig


def _times_reciprocal(op, x, y):  # noqa: ANN001, ANN202 - onnxscript pattern functions
    return op.Mul(x, op.Reciprocal(y))


def _divide(op, x, y):  # noqa: ANN001, ANN202
    return op.Div(x, y)


DIVIDE_INSTEAD_OF_RECIPROCAL = pattern.RewriteRule(_times_reciprocal, _divide, name="DivideInsteadOfReciprocal")


def _swap_through_3d(op, x, flat_shape, out_shape):  # noqa: ANN001, ANN202
    flat = op.Reshape(x, flat_shape, _outputs=["flat"])
    return op.Reshape(op.Transpose(flat, perm=[0, 2, 1]), out_shape, _outputs=["swapped"])


def _swap_last_two_axes(op, x, **_):  # noqa: ANN001, ANN202
    rank = len(x.shape)
    return op.Transpose(x, perm=[*range(rank - 2), rank - 1, rank - 2])


def _is_swap_of_last_two_axes(context, x, flat, swapped, **_) -> bool:  # noqa: ANN001
    """The 3-D detour (flatten leading axes, transpose, restore) equals swapping x's last two axes."""
    if x.shape is None or flat.shape is None or swapped.shape is None or len(x.shape) < 3:
        return False
    dims, flat_dims, out_dims = list(x.shape), list(flat.shape), list(swapped.shape)
    return flat_dims[-2:] == dims[-2:] and out_dims == dims[:-2] + [dims[-1], dims[-2]]


SWAP_LAST_AXES_DIRECTLY = pattern.RewriteRule(
    _swap_through_3d, _swap_last_two_axes, _is_swap_of_last_two_axes, name="SwapLastAxesDirectly"
)

_CLEANUP_RULES = (
    rules.add_0_rule,
    rules.sub_0_rule,
    rules.mul_by_1_rule,
    rules.div_by_1_rule,
    rules.dropout_inference_rule,
    rules.dropout_zero_rule,
    rules.no_op_cast_rule,
    rules.no_op_expand_rule,
    rules.no_op_transpose_rule,
    rules.cast_cast_rule,
    rules.cast_constant_of_shape_rule,
    rules.cast_constant_of_shape_without_value_rule,
    rules.collapse_slice_rule,
    rules.collapse_slice2_rule,
    rules.materialize_reshape_shape_rule,
    rules.reshape_reshape_rule,
    rules.squeeze_reshape_1d_rule,
    rules.transpose_transpose_rule,
    rules.unsqueeze_unsqueeze_rule,
    DIVIDE_INSTEAD_OF_RECIPROCAL,
    SWAP_LAST_AXES_DIRECTLY,
)


@dataclasses.dataclass(frozen=True)
class CleanupConfig(PassConfig):
    """No settings: the cleanup is always the same pipeline."""


class CleanupPass(OnnxforgePass):
    """Fold constants, drop no-op and duplicate nodes, store identical initializers once.

    1. Inline functions, then twice: fold constants, apply the cleanup rules, drop dead nodes.
    2. Deduplicate initializers (a tied embedding and lm_head become one tensor).
    3. Eliminate common subexpressions and give every value a unique name.
    """

    name = "cleanup"
    config_class = CleanupConfig
    summary = "fold constants, remove dead and duplicate nodes"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        before = _size(model.graph)
        common_passes.InlinePass()(model)
        common_passes.ShapeInferencePass()(model)
        for _ in range(2):
            optimizer.fold_constants_ir(model)
            rewriter.rewrite(model, pattern_rewrite_rules=list(_CLEANUP_RULES))
            common_passes.RemoveUnusedNodesPass()(model)
        ir.passes.Sequential(
            common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
            common_passes.DeduplicateInitializersPass(),
            common_passes.CommonSubexpressionEliminationPass(),
            common_passes.RemoveUnusedNodesPass(),
            common_passes.NameFixPass(),
        )(model)
        log.write()
        return ir.passes.PassResult(model, modified=_size(model.graph) != before)


def _size(graph: ir.Graph) -> tuple[int, int]:
    """Nodes and initializers: what the cleanup removes."""
    return graph.num_nodes(), len(graph.initializers)
