"""One ONNX Runtime session over an exported decoder, with the optimum input/output naming."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxforge.errors import BadInput

MODEL_FILE = "model.onnx"
_ORT_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class CacheLayout:
    """What the graph's past_key_values inputs look like: [batch, kv_heads, past, head_dim]."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: type


class Decoder:
    """A decoder-with-past graph: feed ids, mask, positions and past; get logits and present."""

    def __init__(self, model_dir: str | Path, threads: int | None = None) -> None:
        path = Path(model_dir) / MODEL_FILE
        if not path.is_file():
            raise BadInput(f"'{model_dir}' has no {MODEL_FILE}: give a folder written by onnxforge export")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("ONNXFORGE_THREADS", "0"))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.layout = _cache_layout(self.session)
        self.output_names = [output.name for output in self.session.get_outputs()]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Past keys/values of length 0, in input order (key then value for each layer)."""
        lay = self.layout
        shape = (batch, lay.num_kv_heads, 0, lay.head_dim)
        return [np.zeros(shape, lay.dtype) for _ in range(2 * lay.num_layers)]

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        past: list[np.ndarray],
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One graph call; returns float32 logits [batch, seq, vocab] and the present cache."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        for i in range(self.layout.num_layers):
            feeds[f"past_key_values.{i}.key"] = past[2 * i]
            feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
        logits, *present = self.session.run(self.output_names, feeds)
        return logits.astype(np.float32, copy=False), present


def _cache_layout(session: ort.InferenceSession) -> CacheLayout:
    past = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    if not past:
        raise BadInput("model.onnx has no past_key_values inputs: export it with onnxforge export")
    first = past[0]
    return CacheLayout(
        num_layers=len(past) // 2,
        num_kv_heads=int(first.shape[1]),
        head_dim=int(first.shape[3]),
        dtype=_ORT_FLOAT_TYPES[first.type],
    )
