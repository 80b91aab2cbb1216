"""Unstructured and 2:4 sparsity: zero the weights that matter least, reported honestly.

Scores are |W| (magnitude) or |W| times the calibration L2 norm of the weight's input channel
(activation-aware, Wanda). As in Wanda, weights compete within each output channel (a column
of our [in, out] weights): `unstructured` zeroes the lowest `ratio` of every column; `2:4`
keeps the 2 best of every 4 consecutive input weights of every column (the pattern sparse
tensor cores accelerate). With `method = "sparsegpt"` the weights are chosen and the kept ones
refit together (SparseGPT, Frantar & Alistarh 2023, `passes/reconstruction.py`): input rows are
decided in order, 128 at a time (4 for 2:4) by SparseGPT's own score w² / [H⁻¹]_kk², each row's
error pushed onto the rows still to come through the calibration Gram matrix (one shot: every
layer sees the original model's activations). The file does not shrink: weights stay stored densely, and ONNX
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
from onnxforge.passes.reconstruction import reconstruct_rows

PATTERNS = ("unstructured", "2:4")
METHODS = ("mask", "sparsegpt")  # zero the lowest-scoring weights as they are; or choose and refit (SparseGPT)
SPARSEGPT_BLOCK = 128  # input rows whose mask is chosen together (SparseGPT's adaptive mask blocks)


@dataclasses.dataclass(frozen=True)
class SparsifyConfig(PassConfig):
    """Which pattern, how sparse (unstructured only), how to score, which projections."""

    pattern: str = "unstructured"
    ratio: float = 0.5
    scoring: str = "activation"
    targets: tuple[str, ...] = PROJECTIONS
    method: str = "sparsegpt"

    def validate(self) -> None:
        check_choice("pattern", self.pattern, PATTERNS)
        check_choice("method", self.method, METHODS)
        check_fraction("ratio", self.ratio)
        check_choice("scoring", self.scoring, SCORINGS)
        check_projection_names(self.targets)


class SparsifyPass(StructuralPass):
    """Zero the lowest-scoring weights of the target projections.

    1. Score every weight (magnitude, or magnitude times calibration input norms; sparsegpt: its own).
    2. Within each output column, zero the lowest `ratio` (unstructured) or 2 of every 4 (2:4);
       sparsegpt refits the kept weights as it goes.
    """

    name = "sparsify"
    config_class = SparsifyConfig
    summary = "zero weights: unstructured or 2:4 (dense storage)"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        targets = projections(model, self.config.targets)
        statistic = "input_covariances" if self.config.method == "sparsegpt" else "channel_norms"
        measured = self._input_statistics(model, targets, statistic)
        nonzero_before = nonzero_after = 0
        for proj, statistic_of_input in zip(targets, measured):
            weight = proj.array()
            nonzero_before += int(np.count_nonzero(weight))
            if self.config.method == "sparsegpt":
                sparse = sparsegpt(weight, statistic_of_input, self.config.pattern, self.config.ratio)
            else:
                kept = sparse_mask(np.abs(weight) * statistic_of_input[:, None], self.config.pattern, self.config.ratio)
                sparse = np.where(kept, weight, 0).astype(weight.dtype)
            replace_weight(proj.weight, sparse)
            nonzero_after += int(np.count_nonzero(sparse))
        log.write(
            nonzero_before=nonzero_before,
            nonzero_after=nonzero_after,
            note="dense storage: bytes on disk do not change",
        )
        return ir.passes.PassResult(model, modified=nonzero_after != nonzero_before)

    def _input_statistics(self, model: ir.Model, targets: list, statistic: str) -> list[np.ndarray]:
        if self.config.method == "mask" and self.config.scoring == "magnitude":
            return [np.ones(proj.weight.shape[0]) for proj in targets]
        return self.input_statistics(model, targets, statistic, "weight input statistics")


def sparsegpt(weight: np.ndarray, gram: np.ndarray, pattern: str, ratio: float) -> np.ndarray:
    """W [in, out] made sparse by SparseGPT: masks chosen block by block, kept weights refit (`gram` = XᵀX)."""
    block = 4 if pattern == "2:4" else SPARSEGPT_BLOCK
    kept = np.ones(weight.shape, bool)

    def prune_row(row: int, work: np.ndarray, upper: np.ndarray) -> np.ndarray:
        if row % block == 0:
            stop = min(row + block, len(work))
            scores = work[row:stop] ** 2 / np.diag(upper)[row:stop, None] ** 2
            kept[row:stop] = sparse_mask(scores, pattern, ratio)
        return np.where(kept[row], work[row], 0.0)

    return reconstruct_rows(weight, gram, prune_row).astype(weight.dtype)


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
