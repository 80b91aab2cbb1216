"""Decomposed attention with a KV cache -> ONNX Runtime's com.microsoft.GroupQueryAttention.

Two forms, tried in this order on every layer (the first that matches rewrites it):
- `GroupQueryAttentionFusion`: projections -> Reshape/Transpose -> RotaryEmbedding (q, k) ->
  Concat(past, new) = present -> (Unsqueeze/Expand/Reshape to repeat KV heads) -> scores ->
  Add(mask) -> Softmax -> (Where(IsNaN)) -> MatMul -> Transpose -> Reshape becomes RotaryEmbedding
  on the 3-D q and k projections (or rotary inside the kernel) and one GroupQueryAttention. A
  per-head RMSNorm between the split into heads and rotary (qwen3's and gemma3's q/k norm) is
  kept: the rewrite applies it to the 3-D projection (Reshape -> SimplifiedLayerNormalization ->
  Reshape) before the kernel.
- `RotatedAttentionFusion`: the same attention on any q and new k with their heads split, computed
  however the model computes them (rotary left decomposed: LongRoPE, partial rotary; no rotary:
  gpt2's learned positions, smollm3's no-rope layers). The kernel gets them merged back to
  [batch, seq, hidden] and does not rotate; positions stay the model's, so this form is exact.
Scores are `q @ k^T` scaled on both sides (llama) or once on the product (gemma2), optionally
soft-capped as `cap * tanh(scores / cap)` (gemma2; the kernel's `softcap`, applied before the
mask as the model does: checked within 5e-7 on a left-padded batch with a cap of 0.5).
The pattern's one output is the attention result; the rewrite records the old and new `present.*`
values and `swap_presents` rewires the graph outputs afterwards (with three pattern outputs
onnxscript's matcher would try every node against every pair of Concats: ~46 million tries on the
2,062-node default model).

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


def _scores(op, q, keys, q_scale, k_scale, score_scale):
    """q @ keys scaled by constants: both sides by a square root (llama) or the product once (gemma2)."""
    return pattern.OrValue([op.MatMul(op.Mul(q, q_scale), op.Mul(keys, k_scale)),
                            op.Mul(op.MatMul(q, keys), score_scale)])


def _attend(op, q, present_key, present_value, q_scale, k_scale, score_scale, softcap, softcap_again, mask,
            nan_fill, merged_shape):
    """Attention of q [batch, heads, seq, head_dim] over the caches (KV heads repeated), optionally soft-capped
    (`cap * tanh(scores / cap)`, gemma2), masked, softmax, times the values, heads merged (`merged`: [batch, seq,
    hidden], or gpt2's [batch * seq, hidden])"""
    keys = op.Transpose(_repeat_kv(op, present_key), perm=[0, 1, 3, 2])
    capped = op.Mul(op.Tanh(op.Div(_scores(op, q, keys, q_scale, k_scale, score_scale), softcap)), softcap_again)
    scores = pattern.OrValue([capped, _scores(op, q, keys, q_scale, k_scale, score_scale)])
    probs = op.Softmax(op.Add(scores, mask), axis=-1)
    probs = pattern.OrValue([op.Where(op.IsNaN(probs), nan_fill, probs), probs])
    attended = op.MatMul(probs, _repeat_kv(op, present_value), _outputs=["attended"])
    attended = pattern.OrValue([op.Reshape(attended, pattern.ANY_VALUE, _outputs=["attended_view"]), attended])
    return op.Reshape(op.Transpose(attended, perm=[0, 2, 1, 3]), merged_shape, _outputs=["merged"])


class _AttentionFusion(pattern.RewriteRuleClassBase):
    """What both forms share: the checks of caches, scales, soft cap, mask and head counts, and the kernel.

    A form's pattern binds `q_heads` and `k_heads` (the 4-D q and new k that attend); it adds its own
    checks in `check_form` and says in `projections` what the kernel reads instead of them.
    """

    def __init__(self, name: str, shape: AttentionShape) -> None:
        super().__init__(name, remove_nodes=False)  # shapes of inner values are read outside
        self.shape = shape
        self.presents: list[tuple[ir.Value, ir.Value]] = []

    def check(self, context, **bound: ir.Value | None) -> pattern.MatchResult:
        result, shape, get = pattern.MatchResult(), self.shape, bound.get
        caches = (get("past_key"), get("past_value"))
        if not all(value is not None and is_graph_input(value) for value in caches):
            return result.fail("past key/value are not graph inputs", list(caches))
        if _scale(bound) is None:
            return result.fail("the scores are not scaled by positive constants")
        if get("softcap") is not None and _softcap(bound) is None:
            return result.fail("the soft cap is not one positive constant", [get("softcap"), get("softcap_again")])
        if get("nan_fill") is not None and scalar(get("nan_fill")) != 0:
            return result.fail("NaN probabilities are not replaced by 0", get("nan_fill"))
        if ATTENTION_MASK not in _ancestor_inputs(bound["mask"]):
            return result.fail("the mask is not computed from the attention_mask input", get("mask"))
        view, attended = get("attended_view"), bound["attended"]
        if view is not None and (attended.shape is None or view.shape != attended.shape):
            return result.fail("the attention output is reshaped into other heads", view)
        if static_dim(bound["value"], -1) not in (None, shape.num_kv_heads * shape.head_dim):
            return result.fail("the value projection's width does not match the model facts", get("value"))
        heads = ((get("q_heads"), shape.num_heads), (get("k_heads"), shape.num_kv_heads))
        if any(static_dim(x, 1) not in (None, count) for x, count in heads):
            return result.fail("head counts do not match the model facts", [x for x, _ in heads])
        return self.check_form(result, bound)

    def check_form(self, result: pattern.MatchResult, bound: dict[str, ir.Value | None]) -> pattern.MatchResult:
        """The form's own conditions (none by default)."""
        return result

    def projections(self, op, bound: dict[str, ir.Value | None]) -> tuple[ir.Value, ir.Value, tuple, dict]:
        """The kernel's q and k inputs, its cos/sin cache inputs and its rotary attributes."""
        raise NotImplementedError

    def rewrite(self, op, **bound: ir.Value | None):
        shape, unused = self.shape, None  # unused: head sink, KV scales (and the rest below)
        mask, past_key = shape.mask, bound["past_key"]
        q, k, caches, rotary = self.projections(op, bound)
        attended, new_key, new_value = op.GroupQueryAttention(
            q, k, bound["value"], past_key, bound["past_value"], mask.seqlens_k, mask.total_length, *caches,
            unused, mask.bias, unused, unused, unused, unused, unused, mask.query_seqlens,
            num_heads=shape.num_heads, kv_num_heads=shape.num_kv_heads, scale=_scale(bound),
            softcap=_softcap(bound) or 0.0, local_window_size=shape.window(past_key), **rotary,
            _domain=MS_DOMAIN, _outputs=3)
        self.presents += [(bound["present_key"], new_key), (bound["present_value"], new_value)]
        merged = bound["merged"]
        return attended if merged.shape is not None and merged.shape.rank() == 3 else op.Reshape(
            attended, bound["merged_shape"])


def _scale(bound: dict[str, ir.Value | None]) -> float | None:
    """The scores' scale: q's times k's, or the one on their product; None unless positive constants."""
    factors = [scalar(bound.get(name)) for name in ("q_scale", "k_scale")] if bound.get("q_scale") else [
        scalar(bound.get("score_scale"))]
    if not all(isinstance(f, float) and f > 0 for f in factors):
        return None
    return float(np.prod(factors))


def _softcap(bound: dict[str, ir.Value | None]) -> float | None:
    """The soft cap when the scores are divided and multiplied by the same positive constant, else None."""
    cap, again = scalar(bound.get("softcap")), scalar(bound.get("softcap_again"))
    return float(cap) if isinstance(cap, float) and cap > 0 and cap == again else None


class GroupQueryAttentionFusion(_AttentionFusion):
    """Decomposed attention with a KV cache and RotaryEmbedding'd q/k -> com.microsoft.GroupQueryAttention."""

    def __init__(self, shape: AttentionShape) -> None:
        super().__init__("GroupQueryAttention", shape)

    def pattern(self, op, query, key, value, position_ids, cos_cache, sin_cache, past_key, past_value,
                q_scale, k_scale, score_scale, softcap, softcap_again, mask, nan_fill, merged_shape, q_norm_scale,
                k_norm_scale):
        def rotary(x, name, norm_scale):
            heads = _split_heads_maybe_normed(op, x, norm_scale, f"{name}_normed")
            return op.RotaryEmbedding(heads, position_ids, cos_cache, sin_cache, _domain=MS_DOMAIN,
                                      _allow_other_attributes=True, _outputs=[name])

        k_heads = rotary(key, "k_heads", k_norm_scale)
        present_key = op.Concat(past_key, k_heads, axis=-2, _outputs=["present_key"])
        present_value = op.Concat(past_value, _split_heads(op, value), axis=-2, _outputs=["present_value"])
        return _attend(op, rotary(query, "q_heads", q_norm_scale), present_key, present_value, q_scale, k_scale,
                       score_scale, softcap, softcap_again, mask, nan_fill, merged_shape)

    def check_form(self, result: pattern.MatchResult, bound: dict[str, ir.Value | None]) -> pattern.MatchResult:
        shape = self.shape
        for node in (bound["q_heads"].producer(), bound["k_heads"].producer()):
            interleaved = node.attributes.get_int("interleaved", 0)
            if interleaved != 0 or node.attributes.get_int("rotary_embedding_dim", 0) not in (0, shape.head_dim):
                return result.fail("rotary is interleaved or partial", node)
        widths = ((bound["query"], shape.num_heads), (bound["key"], shape.num_kv_heads))
        if any(static_dim(x, -1) not in (None, heads * shape.head_dim) for x, heads in widths):
            return result.fail("projection widths do not match the heads in the model facts", [x for x, _ in widths])
        return result

    def projections(self, op, bound: dict[str, ir.Value | None]) -> tuple[ir.Value, ir.Value, tuple, dict]:
        shape, get = self.shape, bound.get
        query = _per_head_norm(op, bound["query"], get("q_norm_scale"),
                               get("q_heads_normed") or get("q_heads_normed_after_transpose"), shape.num_heads)
        key = _per_head_norm(op, bound["key"], get("k_norm_scale"),
                             get("k_heads_normed") or get("k_heads_normed_after_transpose"), shape.num_kv_heads)
        caches = (bound["cos_cache"], bound["sin_cache"])
        if shape.rotary_inside:  # the kernel rotates q and k itself, at each token's slot position
            return query, key, caches, {"do_rotary": 1}
        positions = bound["position_ids"]
        q = op.RotaryEmbedding(query, positions, *caches, interleaved=0, num_heads=shape.num_heads, _domain=MS_DOMAIN)
        k = op.RotaryEmbedding(key, positions, *caches, interleaved=0, num_heads=shape.num_kv_heads,
                               _domain=MS_DOMAIN)
        return q, k, (None, None), {}


class RotatedAttentionFusion(_AttentionFusion):
    """Decomposed attention whose q and k arrive with their heads already split (and rotated, if the model
    rotates: partial or LongRoPE rotary, or none at all as in gpt2 and smollm3's no-rope layers) ->
    GroupQueryAttention on them merged back to [batch, seq, hidden], without rotary in the kernel."""

    def __init__(self, shape: AttentionShape) -> None:
        super().__init__("GroupQueryAttention(rotated outside)", shape)

    def pattern(self, op, q_heads, k_heads, value, past_key, past_value, q_scale, k_scale, score_scale, softcap,
                softcap_again, mask, nan_fill, merged_shape):
        present_key = op.Concat(past_key, k_heads, axis=-2, _outputs=["present_key"])
        present_value = op.Concat(past_value, _split_heads(op, value), axis=-2, _outputs=["present_value"])
        return _attend(op, q_heads, present_key, present_value, q_scale, k_scale, score_scale, softcap,
                       softcap_again, mask, nan_fill, merged_shape)

    def check_form(self, result: pattern.MatchResult, bound: dict[str, ir.Value | None]) -> pattern.MatchResult:
        heads = (bound["q_heads"], bound["k_heads"])
        if any(x.shape is None or x.shape.rank() != 4 for x in heads):
            return result.fail("q and k are not known to be [batch, heads, seq, head_dim]", list(heads))
        return result

    def projections(self, op, bound: dict[str, ir.Value | None]) -> tuple[ir.Value, ir.Value, tuple, dict]:
        return _merge_heads(op, bound["q_heads"]), _merge_heads(op, bound["k_heads"]), (None, None), {}


def _merge_heads(op, x):
    """[batch, heads, seq, head_dim] -> [batch, seq, heads * head_dim]."""
    flat = op.Constant(value=ir.tensor(np.array([0, 0, -1], np.int64)))
    return op.Reshape(op.Transpose(x, perm=[0, 2, 1, 3]), flat)


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
