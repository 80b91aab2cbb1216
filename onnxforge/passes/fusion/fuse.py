"""Rewrite an exported decoder into ONNX Runtime's contrib kernels, for faster decoding with the same tokens.

Design (each fusion lives in its own module of this room: `norms`, `rotary`, `attention` with
its `mask_inputs`, `qkv_packing`; this module runs them in order):
- Everything is an onnxscript rewrite rule (pattern / check / rewrite) except packing the q/k/v
  MatMuls, which is a plain walk over each value's readers. A graph, or a layer, that a rule does
  not match is left as it was (gpt2's LayerNorm and Gemm projections stay; its attention fuses).
- RMSNorm -> SimplifiedLayerNormalization, then residual Add + norm ->
  SkipSimplifiedLayerNormalization (onnxscript's Skip rules; ORT fuses the plain norm at load
  already, not the Skip form).
- rotary -> com.microsoft.RotaryEmbedding with cos/sin caches [max_positions, head_dim / 2]
  precomputed from the constant inv_freq (max_positions from the model facts).
- attention -> com.microsoft.GroupQueryAttention (soft cap included), rotary inside the kernel on the
  packed q/k/v (`rotary_in_attention`, default) or outside it as RotaryEmbedding (to every
  row's real position ids, so left-padded batches stay exact), seqlens_k = each row's last 1 in the mask,
  total_sequence_length = the attention_mask's length, and padding carried by an additive
  attention_bias [batch, 1, seq, total] (0 or the lowest finite float) built from attention_mask;
  the kernel applies the causal mask. Graph inputs and outputs keep their names and shapes: with a
  growing cache (past of length 0 or more) present comes out of length past + seq as before; with
  `onnxforge.kv_cache = shared_buffer` (set here when every layer's attention fused) the runtime
  binds one [batch, kv_heads, capacity, head_dim] buffer as both past and present and the kernel
  writes the new positions in place.
- A sliding-window model's facts say which layers slide (`sliding_layers`, all of them when
  absent) and by how much; their GroupQueryAttention gets `local_window_size` (the rule does not
  read the window out of the mask). The cache stays full-length (the shared buffer included): the
  kernel reads only the window of it.
- Packing q/k/v (and, tried, gate/up) changed decode speed by no more than the noise (±3%) on
  the default model; it stays on (one MatMul instead of three per layer).

What it buys: on the default model (2,062 -> 474 nodes) a profiled decode step on one thread
drops from 51 to 41 ms, the time outside MatMul from ~17 to ~4.5 ms. At batch 1 in fp32 the rest
is streaming the 537 MB of weights through MatMul (~15 GB/s per core measured here), which no
fusion removes.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript.rewriter import pattern

from onnxforge.errors import ConfigError
from onnxforge.folder import (
    BATCH_ROWS_KEY,
    INDEPENDENT_ROWS,
    KV_CACHE_KEY,
    MS_DOMAIN,
    PAST_PREFIX,
    PRESENT_PREFIX,
    SHARED_BUFFER,
)
from onnxforge.passes.base import OnnxforgePass, PassConfig, check_bool, model_facts
from onnxforge.passes.fusion.attention import (
    AttentionShape,
    GroupQueryAttentionFusion,
    RotatedAttentionFusion,
    read_packed_qkv,
    swap_presents,
)
from onnxforge.passes.fusion.last_logits import keep_last_logits
from onnxforge.passes.fusion.mask_inputs import attention_inputs
from onnxforge.passes.fusion.norms import fuse_norms
from onnxforge.passes.fusion.qkv_packing import pack_sibling_matmuls
from onnxforge.passes.fusion.rotary import RotaryFusion
from onnxforge.passes.fusion.runtime_fit import fit_to_runtime
from onnxforge.passes.runtime_versions import parse_version

FUSED_OPS = ("GroupQueryAttention", "RotaryEmbedding", "SkipSimplifiedLayerNormalization",
             "SimplifiedLayerNormalization")


@dataclasses.dataclass(frozen=True)
class FuseConfig(PassConfig):
    """Which fusions to apply.

    attention: decomposed attention -> com.microsoft GroupQueryAttention (shared KV buffer).
    rotary: rotary -> com.microsoft RotaryEmbedding (without it attention fuses with rotary left outside).
    norms: RMSNorm -> SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization.
    pack_qkv: q/k/v MatMuls reading one input -> one MatMul on the concatenated weight + Split.
    pack_gate_up: likewise the two MatMuls reading one input (the FFN's gate and up projections).
    rotary_in_attention: GroupQueryAttention applies rotary itself (do_rotary) and reads the packed
      q/k/v directly: two RotaryEmbedding and one Split fewer per layer. The kernel places a
      prompt's tokens at slots 0..S-1, so a left-padded row's tokens sit `padding` positions
      later than their position_ids say; rotary attention depends only on the distance between
      positions, so the logits are the same up to float rounding (tested within 1e-4).
    """

    attention: bool = True
    rotary: bool = True
    norms: bool = True
    pack_qkv: bool = True
    pack_gate_up: bool = False
    rotary_in_attention: bool = True
    last_logits: bool = True
    runtime: str = ""

    def validate(self) -> None:
        for field in dataclasses.fields(self):
            if field.name != "runtime":
                check_bool(field.name, getattr(self, field.name))
        if self.runtime:
            try:
                parse_version(self.runtime)
            except ValueError as error:
                raise ConfigError(f"runtime: {error}") from None


class FusePass(OnnxforgePass):
    """Fuse a decoder graph into ONNX Runtime contrib kernels, in this order:

    1. (pack_qkv) the q, k and v MatMuls that read the same input -> one MatMul on the concatenated
       weights (and biases) + Split;
    2. (norms) RMSNorm -> SimplifiedLayerNormalization, and residual Add + RMSNorm ->
       SkipSimplifiedLayerNormalization (normalised output and residual sum);
    3. (rotary) `x * cos + rotate_half(x) * sin` with cos/sin from position_ids ->
       RotaryEmbedding(x, position_ids, cos_cache, sin_cache);
    4. (attention) q/k (RotaryEmbedding'd, or rotated some other way, or not at all), Concat with the
       past, repeated KV heads, scaled (soft-capped) MatMul + mask + Softmax + MatMul ->
       GroupQueryAttention (RotaryEmbedding on the projections or rotary inside), and the metadata
       `onnxforge.kv_cache = shared_buffer` when every layer fused;
    5. (last_logits) the optional input `logits_to_keep`: the vocabulary projection at each row's
       last k tokens only, every position when it is 0 (the default).
    Anything a step does not match is left unchanged.
    """

    name = "fuse"
    config_class = FuseConfig
    summary = "ONNX Runtime kernels: GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayerNorm"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        facts = model_facts(model)
        common_passes.ShapeInferencePass()(model)  # the rules check shapes; pruning passes leave them unknown
        counts_before = _op_counts(model.graph)
        applied = {"packed_qkv": pack_sibling_matmuls(model.graph) if self.config.pack_qkv else 0}
        if self.config.pack_gate_up:
            applied["packed_gate_up"] = pack_sibling_matmuls(model.graph, group_sizes=(2,))
        if self.config.norms:
            applied["norms"], applied["skip_norms"] = fuse_norms(model)
        if self.config.rotary:
            applied["rotary"] = _apply(model, RotaryFusion.rule(max_positions=int(facts["max_positions"])))
        if self.config.attention:
            applied["attention"] = _fuse_attention(model, facts, self.config.rotary_in_attention)
        if self.config.last_logits:
            applied["last_logits"] = int(keep_last_logits(model.graph))
        common_passes.RemoveUnusedNodesPass()(model)
        shared = _every_present_from_gqa(model.graph)
        if shared:
            model.metadata_props[KV_CACHE_KEY] = SHARED_BUFFER
            model.metadata_props[BATCH_ROWS_KEY] = INDEPENDENT_ROWS  # seqlens_k per row (mask_inputs)
        if self.config.runtime:
            applied["runtime_fit"] = fit_to_runtime(model, parse_version(self.config.runtime))
        fused = {op: count for op, count in _op_counts(model.graph).items() if op in FUSED_OPS}
        log.write(fused=fused, rules_applied=applied, shared_kv_buffer=shared)
        return ir.passes.PassResult(model, modified=_op_counts(model.graph) != counts_before or any(applied.values()))


def _apply(model: ir.Model, rule: pattern.RewriteRule) -> int:
    return pattern.RewriteRuleSet([rule]).apply_to_model(model)


def _fuse_attention(model: ir.Model, facts: dict[str, Any], rotary_inside: bool) -> int:
    past = next((v for v in model.graph.inputs if v.name.startswith(PAST_PREFIX)), None)
    built = attention_inputs(model.graph, past.dtype) if past is not None else None
    if built is None:
        return 0
    heads = (int(facts["num_heads"]), int(facts["num_kv_heads"]), int(facts["head_dim"]))
    shape = AttentionShape(*heads, built, rotary_inside=rotary_inside, windows=_sliding_layers(facts))
    rules = (GroupQueryAttentionFusion(shape), RotatedAttentionFusion(shape))  # the first that matches a layer
    count = pattern.RewriteRuleSet([_rule_of(rule) for rule in rules]).apply_to_model(model)
    for rule in rules:
        swap_presents(model.graph, rule.presents)
    if rotary_inside:
        common_passes.RemoveUnusedNodesPass()(model)  # the Split's readers must be only the kernel
        read_packed_qkv(model.graph)
    if count:
        model.opset_imports.setdefault(MS_DOMAIN, 1)
    return count


def _sliding_layers(facts: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    """(layer, window) for every layer that attends through a sliding window shorter than the context."""
    window = facts.get("sliding_window")
    if not isinstance(window, int) or window >= int(facts["max_positions"]):
        return ()
    layers = facts.get("sliding_layers")
    return tuple((layer, window) for layer in (range(int(facts["num_layers"])) if layers is None else layers))


def _rule_of(instance: pattern.RewriteRuleClassBase) -> pattern.RewriteRule:
    """A rule from an existing instance (so that its state can be read after it ran)."""
    return pattern.RewriteRule(instance.pattern, instance.rewrite, instance.check, name=instance.name,
                               remove_nodes=instance.remove_nodes)


def _every_present_from_gqa(graph: ir.Graph) -> bool:
    presents = [v for v in graph.outputs if v.name.startswith(PRESENT_PREFIX)]
    return bool(presents) and all(
        (node := v.producer()) is not None and node.op_type == "GroupQueryAttention" for v in presents)


def _op_counts(graph: ir.Graph) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in graph))
