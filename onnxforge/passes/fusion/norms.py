"""RMSNorm to ONNX Runtime's SimplifiedLayerNormalization, and the residual Add into the Skip variant.

Our exports write RMSNorm as `w * (x / Sqrt(ReduceMean(Pow(x, 2)) + eps))` (a Div, where
onnxscript's `RmsNormFusion` expects `Mul(x, Reciprocal(...))`), so one rule of ours covers the
Div form and onnxscript's rules cover the Reciprocal form. The residual Add that feeds a norm is
then folded in by onnxscript's `SkipRmsNorm` rules, which give
`com.microsoft.SkipSimplifiedLayerNormalization` (normalised output and the residual sum).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.ort_fusions.rms_normalization import rms_normalization_rules
from onnxscript.rewriter.ort_fusions.skip_normalization import skip_rms_normalization_ruleset

from onnxforge.passes.ir_utils import ints, scalar

_FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE})


class RmsNormDivFusion(pattern.RewriteRuleClassBase):
    """`scale * (x / Sqrt(ReduceMean(Pow(x, 2), [-1]) + eps))` -> SimplifiedLayerNormalization."""

    def __init__(self, name: str, scale_first: bool) -> None:
        super().__init__(name)
        self.scale_first = scale_first

    def pattern(self, op, x, scale, epsilon, axes):
        mean_square = op.ReduceMean(op.Pow(x, 2.0), axes, keepdims=1, noop_with_empty_axes=0)
        normalized = op.Div(x, op.Sqrt(op.Add(mean_square, epsilon)))
        return op.Mul(scale, normalized) if self.scale_first else op.Mul(normalized, scale)

    def check(self, context, x, scale, epsilon, axes, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if not isinstance(scalar(epsilon), float):
            return result.fail("epsilon is not a constant float", epsilon)
        if x.dtype not in _FLOAT_TYPES or scale.dtype != x.dtype:
            return result.fail("input and scale are not of the same float type", x)
        rank = x.shape.rank() if x.shape is not None else None
        if ints(axes) not in ([-1], [rank - 1] if rank else [-1]):
            return result.fail("the mean is not over the last axis", axes)
        if scale.shape is None or scale.shape.rank() != 1:
            return result.fail("scale is not a vector", scale)
        return result

    def rewrite(self, op, x, scale, epsilon, **_):
        return op.SimplifiedLayerNormalization(x, scale, axis=-1, epsilon=scalar(epsilon), stash_type=1)


def norm_rules() -> pattern.RewriteRuleSet:
    """RMSNorm in the Div form (ours) and the Reciprocal form (onnxscript's)."""
    return pattern.RewriteRuleSet([
        RmsNormDivFusion.rule("RmsNormDiv1", scale_first=True),
        RmsNormDivFusion.rule("RmsNormDiv2", scale_first=False),
        *rms_normalization_rules,
    ])


def fuse_norms(model: ir.Model) -> tuple[int, int]:
    """Fuse RMSNorms, then residual Adds into them; return (norms fused, residual Adds folded in)."""
    norms = norm_rules().apply_to_model(model)
    skips = skip_rms_normalization_ruleset.apply_to_model(model) if norms else 0
    return norms, skips
