"""Rotary embedding and decomposed attention to ONNX Runtime's RotaryEmbedding and GroupQueryAttention.

Two onnxscript rewrite rules, applied in this order:

1. `RotaryFusion`: `x * cos + cat(-x2, x1) * sin`, where cos/sin are
   `Unsqueeze(Cos|Sin(Concat(f, f)), 1)` and `f = Cast(Unsqueeze(position_ids, 2)) * inv_freq`
   (the transformers-5 export; onnxscript's cos/sin-cache rule expects the older
   `Transpose(MatMul(inv_freq, positions))` and fails on it), becomes
   `com.microsoft.RotaryEmbedding(x, position_ids, cos_cache, sin_cache)` on the 4-D
   [batch, heads, seq, head_dim] tensor. The caches [max_positions, head_dim / 2] are
   initializers computed here from the constant inv_freq.
2. `GroupQueryAttentionFusion`: projections -> Reshape/Transpose -> RotaryEmbedding (q, k) ->
   Concat(past, new) = present -> (Unsqueeze/Expand/Reshape to repeat KV heads) -> both sides
   scaled by sqrt(scale) -> MatMul -> Add(mask) -> Softmax -> (Where(IsNaN)) -> MatMul ->
   Transpose -> Reshape becomes RotaryEmbedding on the 3-D q and k projections and one
   `com.microsoft.GroupQueryAttention`. The pattern's one output is the attention result; the
   rewrite records the old and new `present.*` values and `swap_presents` rewires the graph
   outputs afterwards (with three pattern outputs onnxscript's matcher would try every node
   against every pair of Concats: ~46 million tries on the 2,062-node default model).

The GroupQueryAttention inputs are built once from the graph inputs (`attention_inputs`):
- `seqlens_k = total - 1` for every row and `total_sequence_length = total`, where total is the
  length of `attention_mask` (past + new tokens, padding included);
- `attention_bias` [batch, 1, seq, total]: 0 where the mask is 1, the dtype's lowest finite value
  where it is 0 (finite, so that rows made only of padding give no NaN); this carries left
  padding, and the kernel applies the causal mask itself;
- `query_seqlens = seq` for every row: without it ORT's CPU kernel refuses a call of several
  tokens on a batch of more than one row with a past ("batch_size must be 1 when
  sequence_length > 1 and past context is given"), a call that parity checks make.
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

`pack_sibling_matmuls` (not a pattern: onnxscript would try every triple of MatMuls) turns the
q/k/v MatMuls that read one input into one MatMul on the concatenated weight (and bias) + Split.
GroupQueryAttention could also take the packed QKV itself, but then the rotary would have to be
inside the kernel, so the Split stays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxforge.passes.fuse_norms import ints, scalar

MS_DOMAIN = "com.microsoft"
_PREFIX = "onnxforge.fuse"


def _is_input(value: ir.Value | None, name: str | None = None) -> bool:
    return value is not None and value.is_graph_input() and (name is None or value.name == name)


class RotaryFusion(pattern.RewriteRuleClassBase):
    """Non-interleaved full-width rotary on a 4-D tensor -> com.microsoft.RotaryEmbedding."""

    def __init__(self, max_positions: int) -> None:
        super().__init__("RotaryEmbedding", remove_nodes=False)  # cos/sin are shared by all layers
        self.max_positions = max_positions
        self._caches: dict[ir.Value, tuple[ir.Value, ir.Value]] = {}

    def pattern(self, op, x, position_ids, position_axes, inv_freq, cos_axes, start1, end1, start2, end2, axes, steps):
        positions = op.Cast(op.Unsqueeze(position_ids, position_axes), to=ir.DataType.FLOAT)
        freqs = op.Mul(positions, inv_freq)
        angles = op.Concat(freqs, freqs, axis=-1)
        cos, sin = op.Unsqueeze(op.Cos(angles), cos_axes), op.Unsqueeze(op.Sin(angles), cos_axes)
        x1, x2 = op.Slice(x, start1, end1, axes, steps), op.Slice(x, start2, end2, axes, steps)
        return op.Add(op.Mul(x, cos), op.Mul(op.Concat(op.Neg(x2), x1, axis=-1), sin))

    def check(self, context, x, position_ids, position_axes, inv_freq, cos_axes, start1, end1, start2, end2,
              axes, steps, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if x.shape is None or x.shape.rank() != 4 or not isinstance(x.shape[3], int) or x.dtype != ir.DataType.FLOAT:
            return result.fail("x is not a float32 [batch, heads, seq, head_dim] tensor", x)
        half = x.shape[3] // 2
        frequencies = ir.convenience.get_const_tensor(inv_freq)
        if frequencies is None or frequencies.size != half:
            return result.fail("inv_freq is not a constant of head_dim / 2 values", inv_freq)
        if not _is_input(position_ids, "position_ids") or ints(position_axes) not in ([2], [-1]):
            return result.fail("the angles are not computed from the position_ids input", position_ids)
        halves = (ints(start1), ints(end1), ints(start2))
        if halves != ([0], [half], [half]) or (ints(end2) or [0])[0] < 2 * half:
            return result.fail("x is not split into two halves", x)
        if ints(axes) not in ([3], [-1]) or ints(steps) != [1] or ints(cos_axes) != [1]:
            return result.fail("unexpected slice axes or steps", axes)
        return result

    def rewrite(self, op, x, position_ids, inv_freq, **_):
        cos_cache, sin_cache = self._cos_sin_caches(op, inv_freq)
        return op.RotaryEmbedding(x, position_ids, cos_cache, sin_cache, interleaved=0, _domain=MS_DOMAIN)

    def cleanup(self) -> None:
        """Forget the caches once a graph is done (they belong to that graph)."""
        self._caches.clear()

    def _cos_sin_caches(self, op, inv_freq: ir.Value) -> tuple[ir.Value, ir.Value]:
        if inv_freq not in self._caches:
            frequencies = ir.convenience.get_const_tensor(inv_freq).numpy().reshape(1, -1).astype(np.float32)
            angles = np.arange(self.max_positions, dtype=np.float32)[:, None] * frequencies
            name = f"{_PREFIX}.rotary{len(self._caches) or ''}"
            self._caches[inv_freq] = (op.initializer(ir.tensor(np.cos(angles), name=f"{name}.cos_cache")),
                                      op.initializer(ir.tensor(np.sin(angles), name=f"{name}.sin_cache")))
        return self._caches[inv_freq]


@dataclass(frozen=True)
class MaskInputs:
    """GroupQueryAttention's inputs computed from attention_mask and input_ids (values in the graph)."""

    seqlens_k: ir.Value
    total_length: ir.Value
    bias: ir.Value
    query_seqlens: ir.Value


@dataclass(frozen=True)
class AttentionShape:
    """Heads of q and of k/v, the head size, and the mask inputs shared by every layer."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    mask: MaskInputs
    rotary_inside: bool = False


def _split_heads(op, x):
    return op.Transpose(op.Reshape(x, pattern.ANY_VALUE), perm=[0, 2, 1, 3])


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
                q_scale, k_scale, mask, nan_fill):
        def rotary(x, name):
            return op.RotaryEmbedding(_split_heads(op, x), position_ids, cos_cache, sin_cache, _domain=MS_DOMAIN,
                                      _allow_other_attributes=True, _outputs=[name])

        q = rotary(query, "q_rotary")
        present_key = op.Concat(past_key, rotary(key, "k_rotary"), axis=-2, _outputs=["present_key"])
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
        if not (_is_input(past_key) and _is_input(past_value)):
            return result.fail("past key/value are not graph inputs", [past_key, past_value])
        if not all(isinstance(scalar(s), float) and scalar(s) > 0 for s in (q_scale, k_scale)):
            return result.fail("q and k are not scaled by positive constants", [q_scale, k_scale])
        if nan_fill is not None and scalar(nan_fill) != 0:
            return result.fail("NaN probabilities are not replaced by 0", nan_fill)
        if "attention_mask" not in _ancestor_inputs(mask):
            return result.fail("the mask is not computed from the attention_mask input", mask)
        for node in (q_rotary.producer(), k_rotary.producer()):
            interleaved = node.attributes.get_int("interleaved", 0)
            if interleaved != 0 or node.attributes.get_int("rotary_embedding_dim", 0) not in (0, shape.head_dim):
                return result.fail("rotary is interleaved or partial", node)
        widths = ((query, shape.num_heads), (key, shape.num_kv_heads), (value, shape.num_kv_heads))
        if any(_last_dim(x) not in (None, heads * shape.head_dim) for x, heads in widths):
            return result.fail("projection widths do not match the heads in the model facts", [query, key, value])
        if _dim(q_rotary, 1) not in (None, shape.num_heads) or _dim(k_rotary, 1) not in (None, shape.num_kv_heads):
            return result.fail("head counts do not match the model facts", [q_rotary, k_rotary])
        return result

    def rewrite(self, op, query, key, value, position_ids, cos_cache, sin_cache, past_key, past_value,
                q_scale, k_scale, present_key, present_value, **_):
        shape = self.shape
        mask, unused = shape.mask, None  # unused: head sink, KV scales, q/k norms (and the rest below)
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
            **rotary, _domain=MS_DOMAIN, _outputs=3)
        self.presents += [(present_key, new_key), (present_value, new_value)]
        return attended


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


def _last_dim(value: ir.Value) -> int | None:
    return _dim(value, -1)


def _dim(value: ir.Value, axis: int) -> int | None:
    if value.shape is None or not value.shape.rank():
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else None


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
        name = old.name
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
        old.name, new.name = f"{name}.unfused", name
        new.shape, new.type = old.shape, old.type


class _Builder:
    """Collects new nodes with named outputs, to insert them into a graph in one go."""

    def __init__(self) -> None:
        self.nodes: list[ir.Node] = []

    def __call__(self, op_type: str, inputs: list[ir.Value], name: str, **attributes) -> ir.Value:
        node = ir.node(op_type, inputs, attributes, name=f"{_PREFIX}/{name}")
        node.outputs[0].name = f"{_PREFIX}.{name}"
        self.nodes.append(node)
        return node.outputs[0]

    def constant(self, array: np.ndarray, name: str) -> ir.Value:
        return self("Constant", [], name, value=ir.tensor(array, name=f"{_PREFIX}.{name}"))


def attention_inputs(graph: ir.Graph, dtype: ir.DataType) -> MaskInputs | None:
    """GroupQueryAttention's mask inputs, computed by nodes inserted at the start of the graph."""
    inputs = {value.name: value for value in graph.inputs}
    mask, ids = inputs.get("attention_mask"), inputs.get("input_ids")
    if mask is None or ids is None or len(graph) == 0:
        return None
    add = _Builder()
    batch = add("Shape", [mask], "batch", start=0, end=1)
    total = add("Shape", [mask], "total", start=1, end=2)
    total_length = add("Cast", [add("Squeeze", [total], "total_scalar")], "total_sequence_length", to=ir.DataType.INT32)
    last = add("Sub", [total_length, add.constant(np.array(1, np.int32), "one")], "last")
    seqlens_k = add("Expand", [last, batch], "seqlens_k")
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
    query_seqlens = add("Expand", [seq_length, batch], "query_seqlens")
    graph.insert_before(graph.node(0), add.nodes)
    return MaskInputs(seqlens_k, total_length, bias, query_seqlens)


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
    name = first.replace("q_proj", "qkv_proj") if "q_proj" in first else f"{first}.packed"
    while name in graph.initializers:
        name += "_"
    return name


def _pack(graph: ir.Graph, x: ir.Value, matmuls: list[ir.Node]) -> None:
    adds = _bias_adds(matmuls)
    ends = adds or matmuls
    weights = [node.inputs[1] for node in matmuls]
    packed = ir.Value(name=_packed_name(graph, weights[0].name or "weight"),
                      const_value=ir.tensor(np.concatenate([w.const_value.numpy() for w in weights], axis=1)))
    graph.register_initializer(packed)
    add = _Builder()
    out = add("MatMul", [x, packed], f"{packed.name}.matmul")
    if adds:
        biases = [add_node.inputs[1] if add_node.inputs[0] is matmul.outputs[0] else add_node.inputs[0]
                  for add_node, matmul in zip(adds, matmuls)]
        packed_bias = ir.Value(name=f"{packed.name}.bias",
                               const_value=ir.tensor(np.concatenate([b.const_value.numpy() for b in biases])))
        graph.register_initializer(packed_bias)
        out = add("Add", [out, packed_bias], f"{packed.name}.add")
    widths = np.array([w.shape[1] for w in weights], np.int64)
    split = ir.node("Split", [out, add.constant(widths, f"{packed.name}.widths")], {"axis": -1},
                    num_outputs=len(weights), name=f"{_PREFIX}/{packed.name}.split")
    add.nodes.append(split)
    graph.insert_before(matmuls[0], add.nodes)
    for old, new in zip((node.outputs[0] for node in ends), split.outputs):
        new.name, new.shape, new.type = old.name, old.shape, old.type
        old.name = f"{old.name}.unpacked"
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
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
