"""torch -> ONNX: trace the decoder with past through torch's dynamo exporter, name it as optimum does."""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager
from unittest import mock

import onnx_ir as ir
import torch
from onnxscript.optimizer import FOLDED_FROM_KEY
from torch.export import Dim

from onnxforge.exporter.defaults import DEFAULT_OPSET
from onnxforge.exporter.rope import functional_longrope
from onnxforge.exporter.wrapper import DecoderWithPast
from onnxforge.folder import (
    ATTENTION_MASK,
    BATCH_DIM,
    INPUT_IDS,
    LOGITS,
    PAST_DIM,
    PAST_PREFIX,
    POSITION_IDS,
    PRESENT_PREFIX,
    SEQUENCE_DIM,
    TOTAL_DIM,
    io_names,
)
from onnxforge.models.architectures import ModelFacts
from onnxforge.passes.cleanup import CleanupPass

# Example sizes for tracing: all distinct and > 1 so that no axis is specialised.
_BATCH, _SEQUENCE, _PAST = 2, 3, 5
_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


def trace_to_onnx(model: torch.nn.Module, facts: ModelFacts, opset: int = DEFAULT_OPSET) -> ir.Model:
    """Export `model` as one graph serving prefill and decode, cleaned up, with weights in memory."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torch resets it on import; its warnings are noise
    wrapper = DecoderWithPast(model, facts.num_layers).eval()
    args, dynamic_shapes = _example_inputs(facts)
    inputs, outputs = io_names(facts.num_layers)
    with torch.no_grad(), _sdpa_with_native_gqa(), functional_longrope(model):
        program = torch.onnx.export(
            wrapper,
            args,
            dynamic_shapes=dynamic_shapes,
            input_names=inputs,
            output_names=outputs,
            opset_version=opset,
            dynamo=True,
            optimize=False,
            verbose=False,
        )
    onnx_model = program.model
    CleanupPass()(onnx_model)
    _name_dynamic_axes(onnx_model.graph)
    name_weights(onnx_model.graph)
    drop_trace_metadata(onnx_model.graph)
    return onnx_model


def _sdpa_with_native_gqa() -> AbstractContextManager[object]:
    """Let transformers pass grouped KV heads to SDPA (enable_gqa) instead of repeating them.

    Tracing its repeat_kv (expand + reshape on symbolic shapes) costs ~14 s of the ~52 s
    export of the default model; the exported graph computes the same attention.
    """
    return mock.patch.dict(os.environ, {_FORCE_GQA: "1"})


def _example_inputs(facts: ModelFacts) -> tuple[tuple[torch.Tensor, ...], tuple[object, ...]]:
    ids = torch.randint(0, facts.vocab_size, (_BATCH, _SEQUENCE))
    mask = torch.ones(_BATCH, _PAST + _SEQUENCE, dtype=torch.int64)
    positions = torch.arange(_PAST, _PAST + _SEQUENCE).expand(_BATCH, -1)
    kv_shape = (_BATCH, facts.num_kv_heads, _PAST, facts.head_dim)
    past = tuple(torch.zeros(kv_shape) for _ in range(2 * facts.num_layers))
    batch, seq, past_len = Dim(BATCH_DIM), Dim(SEQUENCE_DIM), Dim(PAST_DIM)
    shapes = (
        {0: batch, 1: seq},
        {0: batch, 1: Dim.DYNAMIC},
        {0: batch, 1: seq},
        tuple({0: batch, 2: past_len} for _ in past),
    )
    return (ids, mask, positions, *past), shapes


def _name_dynamic_axes(graph: ir.Graph) -> None:
    """Give the graph's inputs and outputs optimum's axis names (torch names the mask axis sNN)."""
    axes = {
        INPUT_IDS: (BATCH_DIM, SEQUENCE_DIM),
        POSITION_IDS: (BATCH_DIM, SEQUENCE_DIM),
        ATTENTION_MASK: (BATCH_DIM, TOTAL_DIM),
        LOGITS: (BATCH_DIM, SEQUENCE_DIM, None),
    }
    for value in (*graph.inputs, *graph.outputs):
        names = axes.get(value.name)
        if value.name.startswith(PAST_PREFIX):
            names = (BATCH_DIM, None, PAST_DIM, None)
        elif value.name.startswith(PRESENT_PREFIX):
            names = (BATCH_DIM, None, TOTAL_DIM, None)
        dims = [dim if name is None else name for dim, name in zip(value.shape, names)]
        value.shape = ir.Shape(dims)


def name_weights(graph: ir.Graph) -> None:
    """Give initializers their Hugging Face names (`model.layers.0.mlp.up_proj.weight`).

    The wrapper adds a `model.` prefix to every parameter, and constant folding replaces each
    projection weight by its transpose (stored [in, out] for MatMul) under a generated name;
    the folder records which parameter it came from, so the folded tensor takes that name.
    """
    for name, value in list(graph.initializers.items()):
        weights = [origin for origin in value.meta.get(FOLDED_FROM_KEY, ()) if origin.startswith("model.")]
        origin = weights[0] if len(weights) == 1 else name
        value.metadata_props.pop(FOLDED_FROM_KEY, None)
        if origin.startswith("model.") and origin.removeprefix("model.") not in graph.initializers:
            value.name = origin.removeprefix("model.")  # onnx_ir re-keys graph.initializers itself


def drop_trace_metadata(graph: ir.Graph) -> None:
    """Remove torch's per-node stack traces and module paths (~4 MB on the default model)."""
    for node in graph:
        node.metadata_props.clear()
