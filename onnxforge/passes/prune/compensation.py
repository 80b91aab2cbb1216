"""Closed-form compensation after structured pruning: the projection reading the pruned channels, refit.

Removing channels of an activation X [tokens, F] (FFN channels before down_proj, attention heads
before o_proj) leaves that projection W [F, H] reading only the kept ones. Instead of only dropping
the removed rows, W is refit by least squares on the calibration activations, so that X_kept W'
is as close as the kept channels allow to X W (as FLAP/FASP-style compensation does):

    W' = W_kept + (G_kk + λI)⁻¹ G_kr W_removed,    G = XᵀX over the calibration tokens,

the kept rows plus the combination of kept channels that best stands in for the removed rows'
contribution (W' = W_kept exactly when nothing is removed). λ = DAMPING × mean(diag G_kk), as
GPTQ damps its Hessian, keeps the solve stable when channels are nearly collinear.

A least-squares fit over K kept channels from too few tokens fits the calibration text, not the
model: with 1,024 tokens for SmolLM2's 1,152 kept FFN channels the refit model was worse than
the sliced one. The refit is made only with at least MIN_TOKENS_PER_CHANNEL calibration tokens
per kept channel (the default 32 x 256 tokens are enough there); otherwise the rows are only
sliced and the pass record says `refit: false`.
"""

from __future__ import annotations

import numpy as np

from onnxforge.passes.reconstruction import DAMPING

MIN_TOKENS_PER_CHANNEL = 4


def enough_tokens(tokens: int, kept_channels: int) -> bool:
    """Whether `tokens` calibration tokens are enough to refit a projection over `kept_channels` inputs."""
    return tokens >= MIN_TOKENS_PER_CHANNEL * kept_channels


def refit(weight: np.ndarray, kept: np.ndarray, gram: np.ndarray | None) -> np.ndarray:
    """The rows `kept` of `weight` [F, H], refit to stand in for the others on activations with Gram `gram` [F, F]
    (only sliced when `gram` is None)."""
    removed = np.setdiff1d(np.arange(weight.shape[0]), kept)
    if gram is None or removed.size == 0:
        return weight[kept]
    kept_gram = gram[np.ix_(kept, kept)]
    damped = kept_gram + DAMPING * float(np.mean(np.diag(kept_gram))) * np.eye(len(kept))
    target = gram[np.ix_(kept, removed)] @ weight[removed].astype(np.float64)
    correction = np.linalg.solve(damped, target)
    return (weight[kept] + correction).astype(weight.dtype)
