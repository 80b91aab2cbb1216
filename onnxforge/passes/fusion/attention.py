"""Decomposed attention with a KV cache -> ONNX Runtime's com.microsoft.GroupQueryAttention.

A per-head RMSNorm between the split into heads and rotary (qwen3's and gemma3's q/k norm) is kept: the
rewrite applies it to the 3-D projection (Reshape -> SimplifiedLayerNormalization -> Reshape)
before the kernel, which then rotates the normed q and k as the model does.

`GroupQueryAttentionFusion`: projections -> Reshape/Transpose -> RotaryEmbedding (q, k) ->
Concat(past, new) = present -> (Unsqueeze/Expand/Reshape to repeat KV heads) -> both sides
scaled by sqrt(scale) -> MatMul -> Add(mask) -> Softmax -> (Where(IsNaN)) -> MatMul ->
Transpose -> Reshape becomes RotaryEmbedding on the 3-D q and k projections and one
`com.microsoft.GroupQueryAttention` (its mask inputs from `mask_inputs`). The pattern's one
output is the attention result; the rewrite records the old and new `present.*` values and
`swap_presents` rewires the graph outputs afterwards (with three pattern outputs onnxscript's
matcher would try every node against every pair of Concats: ~46 million tries on the 2,062-node
default model).

With `rotary_inside` the kernel rotates q and k itself (`do_rotary`, no position_ids input): it
puts a prompt's tokens at slots 0..S-1 and later tokens at their slot, so a left-padded row's
tokens sit `padding` places later than their position ids; rotary attention depends only on the
distance between positions, so this changes the logits by float rounding only. Otherwise rotary
stays outside as RotaryEmbedding on every row's position ids (exact; they must stay below
max_positions, the length of the caches); `do_rotary` with position_ids would read only the first
id of each prompt row, which is wrong for left-padded rows.
Checked on ORT 1.32 CPU against a numpy reference: within 2e-7 for a left-padded batch, for
prefill, multi-token chunks with a past, and decode, both with a growing cache and with past and
present bound to one shared buffer. After the fusion nothing but the kernel reads the past
inputs, so a shared buffer longer than the tokens so far changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxforge.folder import ATTENTION_MASK, MS_DOMAIN, PAST_PREFIX
from onnxforge.passes.fusion.mask_inputs import MaskInputs
from onnxforge.passes.ir_utils import is_graph_input, scalar, static_dim, take_over


@dataclass(frozen=True)
class AttentionShape:
    """Heads of q and of k/v, the head size, and the mask inputs shared by every layer."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    mask: MaskInputs
    rotary_inside: bool = False
    windows: tuple[tuple[int, int], ...] = ()  # (layer, sliding window) of every sliding layer

    def window(self, past_key: ir.Value) -> int:
        """The sliding window of the layer whose past key this is; -1 (the kernel's "none") for global layers."""
        layer = int((past_key.name or "").removeprefix(PAST_PREFIX).split(".")[0])
        return dict(self.windows).get(layer, -1)


def _split_heads(op, x):
    return op.Transpose(op.Reshape(x, pattern.ANY_VALUE), perm=[0, 2, 1, 3])


def _split_heads_maybe_normed(op, x, scale, normed):
    """Heads of x, optionally through a per-head RMSNorm before rotary: before the transpose (qwen3) or after
    it (gemma3); either way over head_dim."""
    return pattern.OrValue([
        op.Transpose(op.SimplifiedLayerNormalization(op.Reshape(x, pattern.ANY_VALUE), scale,
                                                     _allow_other_attributes=True, _outputs=[normed]),
                     perm=[0, 2, 1, 3]),
        op.SimplifiedLayerNormalization(_split_heads(op, x), scale, _allow_other_attributes=True,
                                        _outputs=[f"{normed}_after_transpose"]),
        _split_heads(op, x),
    ])


def _repeat_kv(op, x):
    return pattern.OrValue([op.Reshape(op.Expand(op.Unsqueeze(x, pattern.ANY_VALUE), pattern.ANY_VALUE),
                                       pattern.ANY_VALUE), x])


class GroupQueryAttentionFusion(pattern.RewriteRuleClassBase):
    """Decomposed attention with a KV cache and rotary q/k -> com.microsoft.GroupQueryAttention."""

    def __init__(self, shape: AttentionShape) -> None:
        super().__init__("GroupQueryAttention", remove_nodes=False)  # shapes of inner values are read outside
        self.shape = shape
        self.presents: list[tuple[ir.Value, ir.Value]] = []

    def pattern(self, op, query, key, value, position_ids, cos_cache, sin_cache, past_key, past_value,
                q_scale, k_scale, mask, nan_fill, q_norm_scale, k_norm_scale):
        def rotary(x, name, norm_scale):
            heads = _split_heads_maybe_normed(op, x, norm_scale, f"{name}_normed")
            return op.RotaryEmbedding(heads, position_ids, cos_cache, sin_cache, _domain=MS_DOMAIN,
                                      _allow_other_attributes=True, _outputs=[name])

        q = rotary(query, "q_rotary", q_norm_scale)
        present_key = op.Concat(past_key, rotary(key, "k_rotary", k_norm_scale), axis=-2, _outputs=["present_key"])
        present_value = op.Concat(past_value, _split_heads(op, value), axis=-2, _outputs=["present_value"])
        keys = op.Transpose(_repeat_kv(op, present_key), perm=[0, 1, 3, 2])
        scores = op.MatMul(op.Mul(q, q_scale), op.Mul(keys, k_scale))
        probs = op.Softmax(op.Add(scores, mask), axis=-1)
        probs = pattern.OrValue([op.Where(op.IsNaN(probs), nan_fill, probs), probs])
        attended = op.MatMul(probs, _repeat_kv(op, present_value))
        return op.Reshape(op.Transpose(attended, perm=[0, 2, 1, 3]), pattern.ANY_VALUE)

    def check(self, context, query, key, value, past_key, past_value, q_scale, k_scale, mask, nan_fill,
              q_rotary, k_rotary, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        shape = self.shape
        if not (is_graph_input(past_key) and is_graph_input(past_value)):
            return result.fail("past key/value are not graph inputs", [past_key, past_value])
        if not all(isinstance(scalar(s), float) and scalar(s) > 0 for s in (q_scale, k_scale)):
            return result.fail("q and k are not scaled by positive constants", [q_scale, k_scale])
        if nan_fill is not None and scalar(nan_fill) != 0:
            return result.fail("NaN probabilities are not replaced by 0", nan_fill)
        if ATTENTION_MASK not in _ancestor_inputs(mask):
            return result.fail("the mask is not computed from the attention_mask input", mask)
        for node in (q_rotary.producer(), k_rotary.producer()):
            interleaved = node.attributes.get_int("interleaved", 0)
            if interleaved != 0 or node.attributes.get_int("rotary_embedding_dim", 0) not in (0, shape.head_dim):
                return result.fail("rotary is interleaved or partial", node)
        widths = ((query, shape.num_heads), (key, shape.num_kv_heads), (value, shape.num_kv_heads))
        if any(static_dim(x, -1) not in (None, heads * shape.head_dim) for x, heads in widths):
            return result.fail("projection widths do not match the heads in the model facts", [query, key, value])
        heads = (static_dim(q_rotary, 1), static_dim(k_rotary, 1))
        if heads[0] not in (None, shape.num_heads) or heads[1] not in (None, shape.num_kv_heads):
            return result.fail("head counts do not match the model facts", [q_rotary, k_rotary])
        return result

    def rewrite(self, op, query, key, value, position_ids, cos_cache, sin_cache, past_key, past_value,
                q_scale, k_scale, present_key, present_value, q_norm_scale=None, k_norm_scale=None,
                q_rotary_normed=None, k_rotary_normed=None, q_rotary_normed_after_transpose=None,
                k_rotary_normed_after_transpose=None, **_):
        shape = self.shape
        mask, unused = shape.mask, None  # unused: head sink, KV scales (and the rest below)
        q_norm = q_rotary_normed or q_rotary_normed_after_transpose
        k_norm = k_rotary_normed or k_rotary_normed_after_transpose
        query = _per_head_norm(op, query, q_norm_scale, q_norm, shape.num_heads)
        key = _per_head_norm(op, key, k_norm_scale, k_norm, shape.num_kv_heads)
        if shape.rotary_inside:  # the kernel rotates q and k itself, at each token's slot position
            q, k, caches, rotary = query, key, (cos_cache, sin_cache), {"do_rotary": 1}
        else:
            q = op.RotaryEmbedding(query, position_ids, cos_cache, sin_cache, interleaved=0,
                                   num_heads=shape.num_heads, _domain=MS_DOMAIN)
            k = op.RotaryEmbedding(key, position_ids, cos_cache, sin_cache, interleaved=0,
                                   num_heads=shape.num_kv_heads, _domain=MS_DOMAIN)
            caches, rotary = (unused, unused), {}
        attended, new_key, new_value = op.GroupQueryAttention(
            q, k, value, past_key, past_value, mask.seqlens_k, mask.total_length, *caches, unused, mask.bias,
            unused, unused, unused, unused, unused, mask.query_seqlens,
            num_heads=shape.num_heads, kv_num_heads=shape.num_kv_heads, scale=scalar(q_scale) * scalar(k_scale),
            local_window_size=shape.window(past_key), **rotary, _domain=MS_DOMAIN, _outputs=3)
        self.presents += [(present_key, new_key), (present_value, new_value)]
        return attended


def _per_head_norm(op, x, scale, normed, heads):
    """x [batch, seq, heads * head_dim] through the model's per-head RMSNorm (when it has one), same shape."""
    if normed is None:
        return x
    epsilon = normed.producer().attributes.get_float("epsilon", 1e-5)
    split = op.Reshape(x, op.Constant(value=ir.tensor(np.array([0, 0, heads, -1], np.int64))))
    out = op.SimplifiedLayerNormalization(split, scale, axis=-1, epsilon=epsilon, stash_type=1)
    return op.Reshape(out, op.Constant(value=ir.tensor(np.array([0, 0, -1], np.int64))))


def read_packed_qkv(graph: ir.Graph) -> int:
    """Let each GroupQueryAttention that rotates itself read the packed q/k/v MatMul instead of its Split."""
    count = 0
    for node in list(graph):
        if node.op_type != "GroupQueryAttention" or node.attributes.get_int("do_rotary", 0) != 1:
            continue
        split = node.inputs[0].producer() if node.inputs[0] is not None else None
        if (split is None or split.op_type != "Split" or len(split.outputs) != 3
                or list(node.inputs[:3]) != list(split.outputs)
                or any(len(output.uses()) != 1 for output in split.outputs)):
            continue
        node.replace_input_with(0, split.inputs[0])
        node.replace_input_with(1, None)
        node.replace_input_with(2, None)
        graph.remove(split, safe=True)
        count += 1
    return count


def _ancestor_inputs(value: ir.Value, limit: int = 200) -> set[str]:
    """Names of the graph inputs that `value` is computed from (looking back at most `limit` nodes)."""
    names, seen, stack = set(), set(), [value]
    while stack and len(seen) < limit:
        current = stack.pop()
        if current.is_graph_input():
            names.add(current.name)
        producer = current.producer()
        if producer is not None and producer not in seen:
            seen.add(producer)
            stack.extend(v for v in producer.inputs if v is not None)
    return names


def swap_presents(graph: ir.Graph, presents: list[tuple[ir.Value, ir.Value]]) -> None:
    """Make each new present value take the old one's place (and name) among the graph outputs."""
    for old, new in presents:
        take_over(old, new, ".unfused")
