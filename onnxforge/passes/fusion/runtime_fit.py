"""Rewrite a fused graph into the forms an older ONNX Runtime release accepts, or say why it cannot be.

ONNX Runtime 1.32 added GroupQueryAttention's 17th input, `query_seqlens` (each row's new tokens),
which onnxruntime-node 1.30 and onnxruntime-web 1.31 refuse ("input size 17 not in range"). The
older form drops it: the kernel then takes every row's new tokens to be the call's sequence length,
which is what a batch of left-padded rows gives, but a call of several tokens on a batch of more
than one row with a past is refused, so the rows of a batch can no longer sit at different
positions (`onnxforge.batch_rows = independent` is removed).
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxforge.errors import BadInput
from onnxforge.folder import BATCH_ROWS_KEY, MS_DOMAIN
from onnxforge.passes.runtime_versions import minimum_version, version_text

QUERY_SEQLENS_INPUT = 16
QUERY_SEQLENS_SINCE = (1, 32)


def fit_to_runtime(model: ir.Model, version: tuple[int, int]) -> int:
    """Rewrite `model` in place to load in ONNX Runtime `version`; return how many nodes changed (BadInput: cannot)."""
    rewritten = 0
    if version < QUERY_SEQLENS_SINCE:
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if node.domain == MS_DOMAIN and node.op_type == "GroupQueryAttention" \
                    and len(node.inputs) > QUERY_SEQLENS_INPUT:
                _drop_trailing_inputs(node, QUERY_SEQLENS_INPUT)
                rewritten += 1
    if rewritten:
        model.metadata_props.pop(BATCH_ROWS_KEY, None)
        RemoveUnusedNodesPass()(model)  # what computed the dropped inputs
    needed, deciding = minimum_version(model)
    if needed > version:
        reasons = "; ".join(f"{r.what} (needs {version_text(r.version)})" for r in deciding if r.version > version)
        raise BadInput(f"the graph cannot load in ONNX Runtime {version_text(version)}: {reasons}; "
                       f"target {version_text(needed)} or newer")
    return rewritten


def _drop_trailing_inputs(node: ir.Node, keep: int) -> None:
    """Keep the node's first `keep` inputs, then drop the empty ones left at the end."""
    inputs = list(node.inputs[:keep])
    while inputs and inputs[-1] is None:
        inputs.pop()
    node.resize_inputs(len(inputs))
