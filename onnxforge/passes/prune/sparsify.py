"""Unstructured and 2:4 sparsity: zero the weights that matter least, reported honestly.

Scores are |W| (magnitude) or |W| times the calibration L2 norm of the weight's input channel
(activation-aware, Wanda). As in Wanda, weights compete within each output channel (a column
of our [in, out] weights): `unstructured` zeroes the lowest `ratio` of every column; `2:4`
keeps the 2 best of every 4 consecutive input weights of every column (the pattern sparse
tensor cores accelerate). The file does not shrink: weights stay stored densely, and ONNX
Runtime's CPU kernels do not skip zeros. The record gives non-zero parameters next to bytes so
nobody mistakes one for the other; the zeros pay off after compression (zip, or a sparse format).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxforge.passes.base import PassConfig, PassRefused, check_choice, check_fraction
from onnxforge.passes.ir_utils import replace_weight
from onnxforge.passes.prune.ffn import SCORINGS
from onnxforge.passes.prune.projections import PROJECTIONS, StructuralPass, check_projection_names, projections

PATTERNS = ("unstructured", "2:4")


@dataclasses.dataclass(frozen=True)
class SparsifyConfig(PassConfig):
    """Which pattern, how sparse (unstructured only), how to score, which projections."""

    pattern: str = "unstructured"
    ratio: float = 0.5
    scoring: str = "activation"
    targets: tuple[str, ...] = PROJECTIONS

    def validate(self) -> None:
        check_choice("pattern", self.pattern, PATTERNS)
        check_fraction("ratio", self.ratio)
        check_choice("scoring", self.scoring, SCORINGS)
        check_projection_names(self.targets)


class SparsifyPass(StructuralPass):
    """Zero the lowest-scoring weights of the target projections.

    1. Score every weight (magnitude, or magnitude times calibration input norms).
    2. Within each output column, zero the lowest `ratio` (unstructured) or 2 of every 4 (2:4).
    """

    name = "sparsify"
    config_class = SparsifyConfig
    summary = "zero weights: unstructured or 2:4 (dense storage)"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        targets = projections(model, self.config.targets)
        norms = self._input_norms(model, targets)
        nonzero_before = nonzero_after = 0
        for proj, norm in zip(targets, norms):
            weight = proj.array()
            nonzero_before += int(np.count_nonzero(weight))
            kept = sparse_mask(np.abs(weight) * norm[:, None], self.config.pattern, self.config.ratio)
            replace_weight(proj.weight, np.where(kept, weight, 0).astype(weight.dtype))
            nonzero_after += int(kept.sum())
        log.write(
            nonzero_before=nonzero_before,
            nonzero_after=nonzero_after,
            note="dense storage: bytes on disk do not change",
        )
        return ir.passes.PassResult(model, modified=nonzero_after != nonzero_before)

    def _input_norms(self, model: ir.Model, targets: list) -> list[np.ndarray]:
        if self.config.scoring == "magnitude":
            return [np.ones(proj.weight.shape[0]) for proj in targets]
        return self.input_statistics(model, targets, "channel_norms", "weight input norms")


def sparse_mask(scores: np.ndarray, pattern: str, ratio: float) -> np.ndarray:
    """True where a weight of scores [in, out] is kept."""
    rows, columns = scores.shape
    if pattern == "2:4":
        if rows % 4:
            raise PassRefused(f"2:4 sparsity needs input sizes divisible by 4, got {rows}")
        groups = scores.reshape(rows // 4, 4, columns)
        order = np.argsort(groups, axis=1, kind="stable")
        kept = np.zeros_like(groups, dtype=bool)
        np.put_along_axis(kept, order[:, 2:, :], True, axis=1)
        return kept.reshape(rows, columns)
    removed = int(round(ratio * rows))
    order = np.argsort(scores, axis=0, kind="stable")
    kept = np.ones_like(scores, dtype=bool)
    np.put_along_axis(kept, order[:removed, :], False, axis=0)
    return kept
