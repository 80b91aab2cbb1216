"""A one-layer decoder built by hand around ORT's GroupQueryAttention, to test the shared KV buffer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.folder import KV_CACHE_KEY, SHARED_BUFFER

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, CONTEXT = 97, 32, 4, 2, 8, 64


def write_gqa_folder(folder: Path, shared_buffer: bool) -> Path:
    """model.onnx (+ config.json) of an embedding -> GroupQueryAttention -> vocab projection model."""
    folder.mkdir(parents=True)
    model = helper.make_model(_graph(), opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    if shared_buffer:
        helper.set_model_props(model, {KV_CACHE_KEY: SHARED_BUFFER})
    onnx.save(model, folder / "model.onnx")
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": CONTEXT}))
    return folder


def _graph() -> onnx.GraphProto:
    rng = np.random.default_rng(0)
    weights = {
        "embed": rng.standard_normal((VOCAB, HIDDEN)), "wq": rng.standard_normal((HIDDEN, HEADS * HEAD_DIM)),
        "wk": rng.standard_normal((HIDDEN, KV_HEADS * HEAD_DIM)), "wv": rng.standard_normal((HIDDEN, KV_HEADS * HEAD_DIM)),
        "wo": rng.standard_normal((HEADS * HEAD_DIM, VOCAB)), "one": np.array(1), "axis1": np.array([1]),
        "index1": np.array(1),
    }
    nodes = [
        helper.make_node("Gather", ["embed", "input_ids"], ["x"]),
        *[helper.make_node("MatMul", ["x", w], [name]) for w, name in (("wq", "q"), ("wk", "k"), ("wv", "v"))],
        helper.make_node("ReduceSum", ["attention_mask", "axis1"], ["tokens"], keepdims=0),
        helper.make_node("Sub", ["tokens", "one"], ["last"]),
        helper.make_node("Cast", ["last"], ["seqlens_k"], to=TensorProto.INT32),
        helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
        helper.make_node("Gather", ["mask_shape", "index1"], ["total"]),
        helper.make_node("Cast", ["total"], ["total_sequence_length"], to=TensorProto.INT32),
        helper.make_node("GroupQueryAttention",
                         ["q", "k", "v", "past_key_values.0.key", "past_key_values.0.value", "seqlens_k",
                          "total_sequence_length"],
                         ["attended", "present.0.key", "present.0.value"], domain="com.microsoft",
                         num_heads=HEADS, kv_num_heads=KV_HEADS),
        helper.make_node("MatMul", ["attended", "wo"], ["logits"]),
    ]
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", s])
            for n, s in (("input_ids", "seq"), ("attention_mask", "total"), ("position_ids", "seq"))]
    past = [helper.make_tensor_value_info(f"past_key_values.0.{kind}", TensorProto.FLOAT, ["batch", KV_HEADS, "past", HEAD_DIM])
            for kind in ("key", "value")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB])] + [
        helper.make_tensor_value_info(f"present.0.{kind}", TensorProto.FLOAT, ["batch", KV_HEADS, "present", HEAD_DIM])
        for kind in ("key", "value")]
    initializers = [numpy_helper.from_array(value.astype(np.float32) if value.dtype == np.float64 else value, name)
                    for name, value in weights.items()]
    return helper.make_graph(nodes, "gqa", ints + past, outputs, initializers)
