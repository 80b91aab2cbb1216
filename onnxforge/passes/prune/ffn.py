"""Structured FFN pruning: remove intermediate channels (gate/up columns and the matching down rows).

Every channel j of a gated MLP contributes `act(x·gate[:, j]) * (x·up[:, j]) * down[j, :]` to the
output. Its score is `Σ_k |down[j, k]|` times, when activation-aware (Wanda-style |W|·‖x‖), the
L2 norm of channel j of down_proj's input over the calibration tokens. The lowest-scoring
channels are removed per layer (the same ratio everywhere) or globally (one threshold for all
layers, at most `max_layer_ratio` of any layer). Counts are rounded to `multiple_of` so the
kernels keep aligned shapes. The tensors really shrink: parameters and file size drop. With
`compensate` (default) down_proj's kept rows are refit by least squares on the calibration
activations to stand in for the removed ones (`compensation.py`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxforge.models.architectures import ARCHITECTURES
from onnxforge.passes.base import (
    PassConfig,
    check_bool,
    check_choice,
    check_fraction,
    check_positive_int,
    model_facts,
)
from onnxforge.passes.ir_utils import forget_intermediate_shapes, replace_weight
from onnxforge.passes.prune.compensation import enough_tokens, refit
from onnxforge.passes.prune.projections import Projection, StructuralPass, projection, slice_bias

SCORINGS = ("magnitude", "activation")
SCOPES = ("layer", "global")


@dataclasses.dataclass(frozen=True)
class PruneFfnConfig(PassConfig):
    """ratio of intermediate channels to remove, how to score them, and over which scope."""

    ratio: float = 0.25
    scoring: str = "activation"
    scope: str = "layer"
    multiple_of: int = 8
    max_layer_ratio: float = 0.9
    compensate: bool = True

    def validate(self) -> None:
        check_fraction("ratio", self.ratio, high=0.95)
        check_choice("scoring", self.scoring, SCORINGS)
        check_choice("scope", self.scope, SCOPES)
        check_positive_int("multiple_of", self.multiple_of)
        check_fraction("max_layer_ratio", self.max_layer_ratio)
        check_bool("compensate", self.compensate)


class PruneFfnPass(StructuralPass):
    """Remove the lowest-scoring FFN channels of every decoder layer.

    1. Find each layer's gate/up/down MatMuls by their weight names.
    2. Score the channels (magnitude, or magnitude times calibration input norms).
    3. Choose the channels to keep (per layer or global), slice gate and up, and slice (or refit,
       with `compensate`) down.
    """

    name = "prune-ffn"
    config_class = PruneFfnConfig
    summary = "remove FFN channels (gate/up columns, down rows)"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        facts = model_facts(model)
        names = ("gate_proj", "up_proj", "down_proj") if ARCHITECTURES[facts["model_type"]].gated_mlp \
            else ("up_proj", "down_proj")
        layers = [[projection(model, i, name) for name in names] for i in range(facts["num_layers"])]
        downs = [layer[-1] for layer in layers]
        grams = self._grams(model, downs)
        scores = self._scores(downs, grams)
        keep = choose_kept(scores, self.config)
        refitted = bool(grams) and self.config.compensate and enough_tokens(
            self.calibrated().tokens, max(map(len, keep)))
        refits = grams if refitted else [None] * len(layers)
        for (*inputs, down), kept, gram in zip(layers, keep, refits):
            for projected in inputs:  # gate and up (or up alone): their output columns, and bias entries
                replace_weight(projected.weight, projected.array()[:, kept])
                if projected.bias is not None:
                    slice_bias(model.graph, projected, kept)
            replace_weight(down.weight, refit(down.array(), kept, gram))
        forget_intermediate_shapes(model.graph)
        removed = [len(s) - len(k) for s, k in zip(scores, keep)]
        log.write(channels_removed=removed, channels_of=len(scores[0]), refit=refitted)
        return ir.passes.PassResult(model, modified=any(removed))

    def _grams(self, model: ir.Model, downs: list[Projection]) -> list[np.ndarray] | None:
        """XᵀX of each down_proj's input on the calibration text, when scoring or compensation needs it."""
        if self.config.scoring == "magnitude" and not self.config.compensate:
            return None
        return self.input_statistics(model, downs, "input_covariances", "FFN input covariances")

    def _scores(self, downs: list[Projection], grams: list[np.ndarray] | None) -> list[np.ndarray]:
        magnitudes = [np.abs(down.array()).sum(axis=1) for down in downs]
        if self.config.scoring == "magnitude":
            return magnitudes
        return [magnitude * np.sqrt(np.diag(gram)) for magnitude, gram in zip(magnitudes, grams or [])]


def choose_kept(scores: list[np.ndarray], config: PruneFfnConfig) -> list[np.ndarray]:
    """Sorted indices of the channels each layer keeps."""
    if config.scope == "layer":
        counts = [_rounded(config.ratio * len(s), config.multiple_of) for s in scores]
    else:
        threshold = np.quantile(np.concatenate(scores), config.ratio)
        counts = [_rounded(float((s < threshold).sum()), config.multiple_of) for s in scores]
    counts = [
        min(count, _rounded(config.max_layer_ratio * len(s), config.multiple_of, down=True))
        for count, s in zip(counts, scores)
    ]
    return [np.sort(np.argsort(s, kind="stable")[count:]) for count, s in zip(counts, scores)]


def _rounded(count: float, multiple: int, down: bool = False) -> int:
    steps = np.floor(count / multiple) if down else np.round(count / multiple)
    return int(steps) * multiple
