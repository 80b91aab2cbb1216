"""GroupQueryAttention's mask inputs, built once from the graph inputs and shared by every layer.

- `seqlens_k` per row = the index of its last attended slot (the last 1 in `attention_mask`), and
  `total_sequence_length = total`, the mask's length (past + new tokens, padding included). A
  left-padded row ends at the last slot (total - 1, as every row of a generate batch does); a row
  whose tokens start at slot 0 and end earlier (a serving batch whose rows sit at different
  positions) gets its own length, so the kernel writes its new key at its own next slot;
- `attention_bias` [batch, 1, seq, total]: 0 where the mask is 1, the dtype's lowest finite value
  where it is 0 (finite, so that rows made only of padding give no NaN); this carries left
  padding, and the kernel applies the causal mask itself;
- `query_seqlens` per row = min(seq, its length): the new tokens of the call, except in a
  right-padded prefill, where a shorter row has fewer. Without it ORT's CPU kernel refuses a call of
  several tokens on a batch of more than one row with a past ("batch_size must be 1 when
  sequence_length > 1 and past context is given"), a call that parity checks make.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxforge.folder import ATTENTION_MASK, INPUT_IDS
from onnxforge.passes.fusion.rotary import PREFIX
from onnxforge.passes.ir_utils import NodeBuilder


@dataclass(frozen=True)
class MaskInputs:
    """GroupQueryAttention's inputs computed from attention_mask and input_ids (values in the graph)."""

    seqlens_k: ir.Value
    total_length: ir.Value
    bias: ir.Value
    query_seqlens: ir.Value



def row_lengths(add: NodeBuilder, mask: ir.Value) -> ir.Value:
    """Each row's length [batch] (int64): the index of its last 1 in `mask` [batch, total], plus one."""
    one = add.constant(np.array(1, np.int64), "row_lengths_one")
    total = add("Squeeze", [add("Shape", [mask], "mask_length", start=1, end=2)], "mask_length_scalar")
    slot_numbers = add("Range", [one, add("Add", [total, one], "mask_length_plus_one"), one], "slot_numbers")
    attended = add("Mul", [add("Cast", [mask], "mask_int64", to=ir.DataType.INT64), slot_numbers], "attended_slots")
    return add("ReduceMax", [attended, add.constant(np.array([1], np.int64), "axis_1")], "row_lengths", keepdims=0)


def attention_inputs(graph: ir.Graph, dtype: ir.DataType) -> MaskInputs | None:
    """GroupQueryAttention's mask inputs, computed by nodes inserted at the start of the graph."""
    inputs = {value.name: value for value in graph.inputs}
    mask, ids = inputs.get(ATTENTION_MASK), inputs.get(INPUT_IDS)
    if mask is None or ids is None or len(graph) == 0:
        return None
    add = NodeBuilder(PREFIX)
    batch = add("Shape", [mask], "batch", start=0, end=1)
    total = add("Shape", [mask], "total", start=1, end=2)
    total_scalar = add("Squeeze", [total], "total_scalar")
    total_length = add("Cast", [total_scalar], "total_sequence_length", to=ir.DataType.INT32)
    one = add.constant(np.array(1, np.int64), "one")
    lengths = row_lengths(add, mask)
    last_slot = add("Sub", [lengths, one], "last_slot")
    seqlens_k = add("Cast", [last_slot], "seqlens_k", to=ir.DataType.INT32)
    lowest = np.array(np.finfo(dtype.numpy()).min, dtype.numpy())
    keep = add("Cast", [mask], "keep", to=ir.DataType.BOOL)
    bias_2d = add("Where", [keep, add.constant(np.array(0, dtype.numpy()), "zero"), add.constant(lowest, "lowest")],
                  "bias_2d")
    bias_4d = add("Unsqueeze", [bias_2d, add.constant(np.array([1, 2], np.int64), "axes_1_2")], "bias_4d")
    seq = add("Shape", [ids], "seq", start=1, end=2)
    bias_shape = add("Concat", [batch, add.constant(np.array([1], np.int64), "one_dim"), seq, total], "bias_shape",
                     axis=0)
    bias = add("Expand", [bias_4d, bias_shape], "attention_bias")
    seq_length = add("Cast", [add("Squeeze", [seq], "seq_scalar")], "seq_length", to=ir.DataType.INT32)
    lengths_int32 = add("Cast", [lengths], "row_lengths_int32", to=ir.DataType.INT32)
    query_seqlens = add("Min", [add("Expand", [seq_length, batch], "seq_lengths"), lengths_int32], "query_seqlens")
    graph.insert_before(graph.node(0), add.nodes)
    return MaskInputs(seqlens_k, total_length, bias, query_seqlens)
