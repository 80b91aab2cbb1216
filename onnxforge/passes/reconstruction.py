"""Optimal-brain-surgeon row updates, shared by GPTQ (quantisation) and SparseGPT (sparsity).

A weight W [K, N] reads an input whose calibration Gram matrix is G = XᵀX [K, K]. Rows (input
channels) are decided one at a time, in order; the error a decision makes on row k is pushed onto
the rows not yet decided through the inverse Hessian, so that the layer's output on the
calibration activations moves as little as the decision allows. With U the upper Cholesky
factor of (G + λI)⁻¹ (λ = 1 % of G's mean diagonal; inputs that never fire, G_kk = 0, are
zeroed), deciding row k as ŵ_k costs e = (w_k - ŵ_k) / U_kk and updates W[k+1:] -= U[k, k+1:]ᵀ e
(Frantar et al.: GPTQ 2022, SparseGPT 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DAMPING = 0.01

# decide(row, work, upper) -> the row's new values; may read rows not yet decided (work[row:]) and U
Decide = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def reconstruct_rows(weight: np.ndarray, gram: np.ndarray, decide: Decide) -> np.ndarray:
    """W [K, N] with every row decided by `decide` in order, each error spread over the later rows (float64)."""
    work = weight.astype(np.float64).copy()
    hessian = gram.astype(np.float64).copy()
    dead = np.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    work[dead] = 0.0
    hessian[np.diag_indices_from(hessian)] += DAMPING * np.mean(np.diag(hessian))
    upper = np.linalg.cholesky(np.linalg.inv(hessian)).T
    for row in range(work.shape[0]):
        decided = decide(row, work, upper)
        error = (work[row] - decided) / upper[row, row]
        work[row] = decided
        work[row + 1 :] -= np.outer(upper[row, row + 1 :], error)
    return work
