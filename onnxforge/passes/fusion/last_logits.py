"""An optional graph input `logits_to_keep` (folder.LOGITS_TO_KEEP): the vocabulary projection only where needed.

Generation reads the logits of each row's last token; a prompt of S tokens costs S vocabulary
projections (49,152 wide on the default model, a fifth of a token's work) when one is used. The
input is a graph input with a default value (an initializer of the same name): ONNX Runtime lists
it apart from the required inputs, so a tool that does not know it (optimum, transformers.js,
scoring) feeds nothing and gets every position, as before.

- 0 (the default): every position, logits [batch, seq, vocab];
- k > 0: positions last-k+1..last of each row, logits [batch, k, vocab], where a row's last token
  is min(seq, its length) - 1, its length read from attention_mask like GroupQueryAttention's
  (mask_inputs.row_lengths): seq - 1 for a left-padded or full row, its own last token for a
  right-padded one (a serving prefill). k must not exceed any row's new tokens.

The kept positions are gathered from the hidden state that feeds the projection (GatherND), so
whatever follows the projection (gemma2's soft cap, granite's scale) runs on them alone.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.folder import ATTENTION_MASK, INPUT_IDS, LOGITS, LOGITS_TO_KEEP
from onnxforge.passes.fusion.mask_inputs import row_lengths
from onnxforge.passes.ir_utils import NodeBuilder

PREFIX = "onnxforge.last_logits"
_HEADS = ("MatMul", "MatMulNBits", "Gemm")
_PASS_THROUGH = ("Div", "Mul", "Tanh", "Cast", "Add", "Sub")  # elementwise (with scalars), after the head


def keep_last_logits(graph: ir.Graph) -> bool:
    """Give the graph the `logits_to_keep` input; False (unchanged) when it has one or its head is not found."""
    inputs = {value.name: value for value in graph.inputs}
    mask, ids = inputs.get(ATTENTION_MASK), inputs.get(INPUT_IDS)
    head = _vocabulary_head(graph)
    if LOGITS_TO_KEEP in inputs or head is None or mask is None or ids is None:
        return False
    keep = ir.Value(name=LOGITS_TO_KEEP, type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([]),
                    const_value=ir.tensor(np.array(0, np.int64), name=LOGITS_TO_KEEP))
    graph.inputs.append(keep)
    graph.register_initializer(keep)
    add = NodeBuilder(PREFIX)
    hidden = head.inputs[0]
    kept = add("GatherND", [hidden, _kept_positions(add, keep, mask, ids)], "hidden", batch_dims=1)
    head.replace_input_with(0, kept)
    graph.insert_before(head, add.nodes)
    return True


def _kept_positions(add: NodeBuilder, keep: ir.Value, mask: ir.Value, ids: ir.Value) -> ir.Value:
    """Indices [batch, kept, 1] into the sequence axis: every position (keep = 0) or each row's last `keep`."""
    zero, one = add.constant(np.array(0, np.int64), "zero"), add.constant(np.array(1, np.int64), "one")
    seq = add("Squeeze", [add("Shape", [ids], "seq", start=1, end=2)], "seq_scalar")
    last = add("Sub", [add("Min", [row_lengths(add, mask), seq], "new_tokens"), one], "last")
    every = add("Equal", [keep, zero], "every_position")
    count = add("Where", [every, seq, keep], "count")
    start = add("Where", [every, zero, add("Add", [add("Sub", [last, count], "before_first"), one], "first")],
                "start")
    offsets = add("Range", [zero, count, one], "offsets")
    positions = add("Add", [add("Unsqueeze", [start, add.constant(np.array([1], np.int64), "kept_axis_1")], "start_2d"),
                            offsets], "positions")
    return add("Unsqueeze", [positions, add.constant(np.array([2], np.int64), "kept_axis_2")], "positions_3d")


def _vocabulary_head(graph: ir.Graph) -> ir.Node | None:
    """The projection computing `logits` from a [batch, seq, hidden] state, through elementwise steps only."""
    value = next((v for v in graph.outputs if v.name == LOGITS), None)
    while value is not None and (node := value.producer()) is not None:
        if node.op_type in _HEADS:
            source = node.inputs[0]
            return node if source is not None and source.shape is not None and source.shape.rank() == 3 else None
        tensors = [v for v in node.inputs if v is not None and not _is_scalar(v)]
        if node.op_type not in _PASS_THROUGH or len(tensors) != 1:
            return None
        value = tensors[0]
    return None


def _is_scalar(value: ir.Value) -> bool:
    """A scalar operand broadcasts to any number of kept positions; a tensor one might not."""
    return value.shape is not None and value.shape.rank() == 0
