"""Low-rank factorisation: MatMul(x, W) becomes MatMul(MatMul(x, A), B) from a truncated SVD of W.

W [in, out] is replaced by A [in, r] and B [r, out] only where r * (in + out) < in * out (it
must get smaller). The rank comes from a parameter budget (`keep`: the fraction of W's
parameters that A and B may hold) or from retained energy (`energy`: the share of the squared
singular values kept).

The SVD is taken of S·W for an input transform S, and A = S⁻¹·U_r·√Σ_r, B = √Σ_r·V_rᵀ:
- `plain`: S = I (truncated SVD of W).
- `activation` (ASVD): S = diag(‖x_c‖^alpha) from calibration: inputs with large activations
  matter more, so the truncation error lands where activations are small.
- `whiten` (SVD-LLM): S = Lᵀ with L·Lᵀ = XᵀX the calibration inputs' Gram matrix; dropping
  singular value σ_i then costs exactly σ_i² of squared output error ‖X·W - X·A·B‖² on the
  calibration tokens, so the truncation is optimal for them.
All split √Σ between the two factors so neither has an outsized range.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxforge.errors import ConfigError
from onnxforge.passes.base import PassConfig, check_choice, check_fraction
from onnxforge.passes.ir_utils import add_initializer, forget_intermediate_shapes
from onnxforge.passes.prune.projections import (
    PROJECTIONS,
    Projection,
    StructuralPass,
    check_projection_names,
    projections,
)

LOWRANK_SCORINGS = ("plain", "activation", "whiten")


@dataclasses.dataclass(frozen=True)
class LowRankConfig(PassConfig):
    """Rank by parameter budget (`keep`) or by retained energy (`energy` > 0), plain or activation-aware."""

    keep: float = 0.5
    energy: float = 0.0
    scoring: str = "whiten"
    alpha: float = 0.5
    targets: tuple[str, ...] = PROJECTIONS
    only_if_smaller: bool = True

    def validate(self) -> None:
        check_fraction("keep", self.keep)
        if not isinstance(self.energy, (int, float)) or not 0.0 <= self.energy <= 1.0:
            raise ConfigError(f"energy must be a number from 0 (use keep) to 1, got {self.energy!r}")
        if self.keep == 0.0 and self.energy == 0.0:
            raise ConfigError("set keep (a parameter budget above 0) or energy (retained energy above 0)")
        check_choice("scoring", self.scoring, LOWRANK_SCORINGS)
        check_fraction("alpha", self.alpha, high=2.0)
        check_projection_names(self.targets)
        if not isinstance(self.only_if_smaller, bool):
            raise ConfigError(f"only_if_smaller must be true or false, got {self.only_if_smaller!r}")


class LowRankPass(StructuralPass):
    """Replace target projections by two thinner MatMuls where that saves parameters.

    1. Collect input channel norms (activation-aware) for the target projections.
    2. For each weight: SVD of S·W, choose the rank, skip when it would not shrink.
    3. Insert MatMul(x, A) before the original node, which now multiplies by B.
    """

    name = "lowrank"
    config_class = LowRankConfig
    summary = "factorise MatMuls by truncated SVD where it saves parameters"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        targets = projections(model, self.config.targets)
        scales = self._scales(model, targets)
        ranks: dict[str, int] = {}
        for proj, scale in zip(targets, scales):
            factors = factorize(proj.array(), scale, self.config)
            if factors is not None:
                _split(model.graph, proj, *factors)
                ranks[proj.weight.name] = factors[0].shape[1]
        forget_intermediate_shapes(model.graph)
        log.write(factorized=len(ranks), of=len(targets), ranks=ranks)
        return ir.passes.PassResult(model, modified=bool(ranks))

    def _scales(self, model: ir.Model, targets: list[Projection]) -> list[np.ndarray]:
        """The input transform S of each target: a vector (diagonal) or a triangular matrix."""
        if self.config.scoring == "plain":
            return [np.ones(proj.weight.shape[0]) for proj in targets]
        if self.config.scoring == "whiten":
            grams = self.input_statistics(model, targets, "input_covariances", "MatMul input Gram matrices")
            return [whitening(gram) for gram in grams]
        norms = self.input_statistics(model, targets, "channel_norms", "MatMul input norms")
        return [activation_scale(norm, self.config.alpha) for norm in norms]


def activation_scale(norms: np.ndarray, alpha: float) -> np.ndarray:
    """S = ‖x‖^alpha per input channel, normalised to mean 1, floored so S⁻¹ stays finite."""
    scale = np.power(np.maximum(norms, 1e-12), alpha)
    scale /= scale.mean()
    return np.maximum(scale, 1e-6)


def whitening(gram: np.ndarray) -> np.ndarray:
    """S = Lᵀ where L·Lᵀ = XᵀX (+ a small ridge so that channels the text never used stay invertible)."""
    ridge = 1e-6 * np.trace(gram) / len(gram)
    return np.linalg.cholesky(gram + ridge * np.eye(len(gram))).T


def factorize(weight: np.ndarray, scale: np.ndarray, config: LowRankConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """A [in, r] and B [r, out] with A·B ≈ W, or None when the chosen rank would not save parameters.

    `scale` is the input transform S: a vector for a diagonal one, else an invertible matrix.
    """
    rows, columns = weight.shape
    transform = np.diag(scale) if scale.ndim == 1 else scale
    u, s, vt = np.linalg.svd(transform @ weight.astype(np.float64), full_matrices=False)
    rank = _rank(s, rows, columns, config)
    if config.only_if_smaller and rank * (rows + columns) >= rows * columns:
        return None
    root = np.sqrt(s[:rank])
    left = u[:, :rank] * root
    a = left / scale[:, None] if scale.ndim == 1 else np.linalg.solve(transform, left)
    b = root[:, None] * vt[:rank]
    return a.astype(weight.dtype), b.astype(weight.dtype)


def _rank(singular: np.ndarray, rows: int, columns: int, config: LowRankConfig) -> int:
    if config.energy > 0:
        retained = np.cumsum(singular**2) / np.sum(singular**2)
        return int(min(np.searchsorted(retained, config.energy - 1e-12) + 1, len(singular)))
    return max(1, int(config.keep * rows * columns / (rows + columns)))


def _split(graph: ir.Graph, proj: Projection, a: np.ndarray, b: np.ndarray) -> None:
    """x·W -> (x·A)·B: a new MatMul by A before the node, which now multiplies by B."""
    stem = proj.weight.name.removesuffix(".weight")
    first = add_initializer(graph, f"{stem}.lowrank_a", a)
    second = add_initializer(graph, f"{stem}.lowrank_b", b)
    narrow = ir.node("MatMul", [proj.input, first], name=f"{proj.node.name}/lowrank_a")
    graph.insert_before(proj.node, narrow)
    proj.node.replace_input_with(0, narrow.outputs[0])
    proj.node.replace_input_with(1, second)
    graph.initializers.pop(proj.weight.name)
