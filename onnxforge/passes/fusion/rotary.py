"""Rotary position embedding -> ONNX Runtime's com.microsoft.RotaryEmbedding.

`x * cos + cat(-x2, x1) * sin`, where cos/sin are `Unsqueeze(Cos|Sin(Concat(f, f)), 1)` and
`f = Cast(Unsqueeze(position_ids, 2)) * inv_freq` (the transformers-5 export; onnxscript's
cos/sin-cache rule expects the older `Transpose(MatMul(inv_freq, positions))` and fails on it),
becomes `com.microsoft.RotaryEmbedding(x, position_ids, cos_cache, sin_cache)` on the 4-D
[batch, heads, seq, head_dim] tensor. The caches [max_positions, head_dim / 2] are initializers
computed here from the constant inv_freq.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxforge.folder import MS_DOMAIN, POSITION_IDS
from onnxforge.passes.ir_utils import ints, is_graph_input

PREFIX = "onnxforge.fuse"


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
        if not is_graph_input(position_ids, POSITION_IDS) or ints(position_axes) not in ([2], [-1]):
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
            name = f"{PREFIX}.rotary{len(self._caches) or ''}"
            self._caches[inv_freq] = (op.initializer(ir.tensor(np.cos(angles), name=f"{name}.cos_cache")),
                                      op.initializer(ir.tensor(np.sin(angles), name=f"{name}.sin_cache")))
        return self._caches[inv_freq]
