"""Attention-head pruning, GQA-aware: whole KV groups, or query heads evenly within every group.

A query head h owns rows h*D..(h+1)*D of o_proj's weight (D = head_dim). Its score is the sum of
|o_proj| over those rows, times (activation-aware, Wanda-style) the calibration L2 norm of each
row's input channel. A KV group scores the sum of its query heads.

- `mode = "query"` removes the same number of query heads from every group (so each KV head
  still serves an equal share): q_proj columns, o_proj rows, and the GQA expansion constants
  change; the KV cache keeps its shape.
- `mode = "kv_groups"` removes whole groups: their k/v columns, their query heads, and the
  group from the KV cache (past/present inputs get fewer heads; config.json follows).

The same number is removed in every layer (the runtime's cache has one shape for all layers);
which heads go is chosen per layer. Removal counts are whole heads: the ratio is rounded to the
nearest achievable step and the realised fraction is recorded. With `compensate` (default)
o_proj's kept rows are refit by least squares on the calibration activations to stand in for
the removed heads (`compensation.py`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxforge.folder import PAST_PREFIX, PRESENT_PREFIX, present_name
from onnxforge.passes.base import PassConfig, check_bool, check_choice, check_fraction, model_facts, set_model_facts
from onnxforge.passes.ir_utils import add_initializer, forget_intermediate_shapes, replace_weight
from onnxforge.passes.prune.compensation import enough_tokens, refit
from onnxforge.passes.prune.ffn import SCORINGS
from onnxforge.passes.prune.projections import Projection, StructuralPass, projection

MODES = ("query", "kv_groups")


@dataclasses.dataclass(frozen=True)
class PruneHeadsConfig(PassConfig):
    """Fraction of heads to remove, whether query heads or whole KV groups, and the scoring."""

    ratio: float = 0.25
    mode: str = "query"
    scoring: str = "activation"
    compensate: bool = True

    def validate(self) -> None:
        check_fraction("ratio", self.ratio)
        check_choice("mode", self.mode, MODES)
        check_choice("scoring", self.scoring, SCORINGS)
        check_bool("compensate", self.compensate)


class PruneHeadsPass(StructuralPass):
    """Remove the lowest-scoring attention heads of every layer.

    1. Score the query heads from o_proj (and calibration input norms when activation-aware).
    2. Per layer, keep the best heads of each group (query mode) or the best groups.
    3. Slice q/k/v columns (and biases) and o_proj rows; rewrite the GQA expansion constants
       and, for kv_groups, the cache input/output shapes.
    """

    name = "prune-heads"
    config_class = PruneHeadsConfig
    summary = "remove attention heads (query heads per group, or KV groups)"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        facts = model_facts(model)
        log = self.log(model)
        groups, per_group = facts["num_kv_heads"], facts["num_heads"] // facts["num_kv_heads"]
        removed = self._removed_count(groups, per_group)
        outs = [projection(model, i, "o_proj") for i in range(facts["num_layers"])]
        grams = self._grams(model, outs)
        scores = self._head_scores(outs, grams, facts)
        heads_left = facts["num_heads"] - removed * (per_group if self.config.mode == "kv_groups" else groups)
        refitted = bool(grams) and self.config.compensate and enough_tokens(
            self.calibrated().tokens, heads_left * facts["head_dim"])
        kept_groups, kept_heads = [], []
        for layer, head_scores in enumerate(scores):
            by_group = head_scores.reshape(groups, per_group)
            if self.config.mode == "kv_groups":
                groups_kept = np.sort(np.argsort(by_group.sum(1), kind="stable")[removed:])
                heads = [int(g * per_group + j) for g in groups_kept for j in range(per_group)]
            else:
                groups_kept = np.arange(groups)
                best = [np.sort(np.argsort(by_group[g], kind="stable")[removed:]) for g in groups_kept]
                heads = [int(g * per_group + j) for g, kept in zip(groups_kept, best) for j in kept]
            refit_gram = grams[layer] if refitted else None
            _slice_layer(model, layer, facts["head_dim"], list(groups_kept), heads, refit_gram)
            kept_groups.append(groups_kept.tolist())
            kept_heads.append(heads)
        new_groups, new_heads = len(kept_groups[0]), len(kept_heads[0])
        _rewrite_expansion(model.graph, facts, new_groups, new_heads // new_groups)
        _resize_cache(model.graph, new_groups)
        forget_intermediate_shapes(model.graph)
        set_model_facts(model, {**facts, "num_heads": new_heads, "num_kv_heads": new_groups})
        log.write(
            heads_before=facts["num_heads"],
            heads_after=new_heads,
            kv_heads_after=new_groups,
            removed_fraction=round(1 - new_heads / facts["num_heads"], 4),
            kept_heads=kept_heads,
            refit=refitted,
        )
        return ir.passes.PassResult(model, modified=True)

    def _removed_count(self, groups: int, per_group: int) -> int:
        unit = groups if self.config.mode == "kv_groups" else per_group
        removed = round(self.config.ratio * unit)
        if not 1 <= removed < unit:
            what = "KV groups" if self.config.mode == "kv_groups" else "query heads per group"
            raise self.refuse(
                f"ratio {self.config.ratio} removes {removed} of {unit} {what}: choose a ratio that "
                f"removes at least one and keeps at least one (steps of {1 / unit:.3g})"
            )
        return removed

    def _grams(self, model: ir.Model, outs: list[Projection]) -> list[np.ndarray] | None:
        """XᵀX of each o_proj's input on the calibration text, when scoring or compensation needs it."""
        if self.config.scoring == "magnitude" and not self.config.compensate:
            return None
        return self.input_statistics(model, outs, "input_covariances", "attention head covariances")

    def _head_scores(self, outs: list[Projection], grams: list[np.ndarray] | None, facts: dict) -> list[np.ndarray]:
        rows = [np.abs(o.array()).sum(axis=1) for o in outs]
        if self.config.scoring == "activation":
            rows = [row * np.sqrt(np.diag(gram)) for row, gram in zip(rows, grams or [])]
        return [row.reshape(facts["num_heads"], facts["head_dim"]).sum(axis=1) for row in rows]


def _columns(blocks: list[int], size: int) -> np.ndarray:
    return np.concatenate([np.arange(b * size, (b + 1) * size) for b in blocks])


def _slice_layer(model: ir.Model, layer: int, head_dim: int, groups: list[int], heads: list[int],
                 gram: np.ndarray | None) -> None:
    """Keep the given query heads (q columns, o rows: refit when `gram` is given) and KV groups (k/v columns),
    biases included."""
    query, kv = _columns(heads, head_dim), _columns(groups, head_dim)
    for name, kept in (("q_proj", query), ("k_proj", kv), ("v_proj", kv)):
        proj = projection(model, layer, name)
        replace_weight(proj.weight, proj.array()[:, kept])
        if proj.bias is not None:
            replace_weight(proj.bias, proj.bias.const_value.numpy()[kept])
    out = projection(model, layer, "o_proj")
    replace_weight(out.weight, refit(out.array(), query, gram))


def _rewrite_expansion(graph: ir.Graph, facts: dict, groups: int, per_group: int) -> None:
    """Set the constants of the GQA expansion (Expand to [b, groups, per_group, t, d], Reshape to heads)."""
    if facts["num_heads"] == facts["num_kv_heads"]:
        return
    for layer in range(facts["num_layers"]):
        present = next(o for o in graph.outputs if o.name == present_name(layer, "key"))
        unsqueeze = next(u.node for u in present.uses() if u.node.op_type == "Unsqueeze")
        expand = next(u.node for u in unsqueeze.outputs[0].uses() if u.node.op_type == "Expand")
        reshape = next(u.node for u in expand.outputs[0].uses() if u.node.op_type == "Reshape")
        old_per_group = facts["num_heads"] // facts["num_kv_heads"]
        _set_concat_constants(
            graph, expand.inputs[1].producer(), {1: facts["num_kv_heads"], 2: old_per_group}, {1: groups, 2: per_group}
        )
        _set_concat_constants(graph, reshape.inputs[1].producer(), {1: facts["num_heads"]}, {1: groups * per_group})


def _set_concat_constants(
    graph: ir.Graph, concat: ir.Node | None, expected: dict[int, int], new: dict[int, int]
) -> None:
    if concat is None or concat.op_type != "Concat":
        raise ValueError("unexpected GQA expansion: its shape is not built by a Concat (re-export the model)")
    for index, value in expected.items():
        current = concat.inputs[index].const_value
        if current is not None and current.numpy().tolist() == [new[index]] and value != new[index]:
            continue  # a Concat shared by several layers, already rewritten
        if current is None or current.numpy().tolist() != [value]:
            raise ValueError(f"unexpected GQA expansion: shape input {index} is not the constant [{value}]")
        constant = add_initializer(graph, f"{concat.name}/heads_{index}", np.array([new[index]], np.int64))
        concat.replace_input_with(index, constant)


def _resize_cache(graph: ir.Graph, groups: int) -> None:
    """Past inputs and present outputs: [batch, groups, length, head_dim]."""
    for value in [*graph.inputs, *graph.outputs]:
        if value.name.startswith((PAST_PREFIX, PRESENT_PREFIX)) and value.shape is not None:
            dims = list(value.shape)
            value.shape = ir.Shape([dims[0], groups, *dims[2:]])
