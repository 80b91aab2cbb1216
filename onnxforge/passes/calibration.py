"""Calibration: run the current graph in ONNX Runtime over text and reduce the activations a pass asks for.

Shared by every data-aware pass (activation-aware pruning, low-rank, layer importance). The text
is by default the shipped Wikipedia passages (`data/calibration/boolq_passages.jsonl`, kept apart
from every evaluation set) or a user file (.jsonl with a "text" field, or plain text), joined
and cut into `samples` rows of `max_tokens` tokens with the model's own tokenizer. Rows run one
at a time (no padding) with an empty KV cache; only the requested values are graph outputs, so
the vocabulary projection is skipped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from onnxforge.data import data_file
from onnxforge.errors import BadInput
from onnxforge.folder import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    PAST_PREFIX,
    POSITION_IDS,
    TOKEN_TYPE_IDS,
    read_manifest,
    read_tokenizer,
)
from onnxforge.passes.base import OnnxforgePass, PassConfig
from onnxforge.progress import console

_PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class CalibrationSettings:
    """Which text, how much of it, and how many threads ONNX Runtime may use."""

    samples: int = 32
    max_tokens: int = 256
    file: str | None = None
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("samples", "max_tokens", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadInput(f"calibration {name} must be a whole number >= 1, got {value!r}")


def read_texts(file: str | None) -> list[str]:
    """Paragraphs of the calibration file (the shipped passages when file is None)."""
    path = Path(file) if file else data_file("calibration")
    if not path.is_file():
        raise BadInput(f"calibration file {path} does not exist: give a .jsonl with a 'text' field or a .txt file")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".jsonl":
        return [part for part in text.split("\n\n") if part.strip()]
    try:
        return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise BadInput(f"calibration file {path}: every line must be a JSON object with a 'text' field") from None


CALIBRATION_FIELDS = tuple(f.name for f in dataclasses.fields(CalibrationSettings))


class Calibration:
    """Token rows and the settings to run them; `run` feeds them through a graph."""

    def __init__(self, rows: Sequence[np.ndarray], threads: int = 2, source: str = "") -> None:
        self.rows, self.threads, self.source = list(rows), threads, source

    @classmethod
    def from_folder(cls, folder: Path, settings: CalibrationSettings) -> Calibration:
        """Tokenize the calibration text with the folder's tokenizer (only as much as needed), cut it into rows."""
        tokenizer = read_tokenizer(folder)
        longest = (read_manifest(folder).get("architecture") or {}).get("max_seq_length")  # an encoder's limit
        length = min(settings.max_tokens, longest or settings.max_tokens)
        wanted, ids = settings.samples * length, []
        for text in read_texts(settings.file):
            ids += tokenizer.encode(text + "\n\n", add_special_tokens=False).ids
            if len(ids) >= wanted:
                break
        rows = [np.array(ids[i : i + length]) for i in range(0, len(ids), length)]
        rows = [row for row in rows if len(row) == length][: settings.samples]
        if not rows:
            raise BadInput(f"calibration text holds fewer than {length} tokens: use a longer file")
        return cls(rows, settings.threads, settings.file or "shipped boolq passages")

    @property
    def tokens(self) -> int:
        """Calibration tokens over all rows."""
        return sum(len(row) for row in self.rows)

    def to_json(self) -> dict:
        """What the calibration used, for onnxforge.json."""
        return {"source": self.source, "samples": len(self.rows), "tokens_per_sample": int(len(self.rows[0]))}

    def run(
        self, model: ir.Model, values: Sequence[ir.Value], reduce: Callable[[list[np.ndarray]], None], label: str
    ) -> None:
        """Call `reduce` with the arrays of `values` (batch 1, one row) for every calibration row."""
        session = _session(model, values, self.threads)
        names = [value.name for value in values]
        with console.status(f"calibration: {label}") as status:
            for number, row in enumerate(self.rows, start=1):
                status.update(f"calibration: {label} ({number}/{len(self.rows)} samples)")
                reduce(session.run(names, calibration_feeds(graph_inputs(model), row)))

    def mean_nll(self, model: ir.Model, label: str) -> float:
        """Mean next-token negative log-likelihood (nats) of `model` on the calibration rows."""
        logits_value = next(value for value in model.graph.outputs if value.name == LOGITS)
        losses: list[np.ndarray] = []

        def add(arrays: list[np.ndarray]) -> None:
            targets = self.rows[len(losses)][1:]
            shifted = arrays[0][0, :-1].astype(np.float64)
            shifted -= shifted.max(axis=-1, keepdims=True)
            log_norm = np.log(np.exp(shifted).sum(axis=-1))
            losses.append(log_norm - shifted[np.arange(len(targets)), targets])

        self.run(model, [logits_value], add, label)
        return float(np.concatenate(losses).mean())

    def channel_norms(self, model: ir.Model, values: Sequence[ir.Value], label: str) -> list[np.ndarray]:
        """Per-channel L2 norm over all calibration tokens of each value (its last axis)."""
        sums = [np.zeros(0)] * len(values)

        def add(arrays: list[np.ndarray]) -> None:
            for i, array in enumerate(arrays):
                squares = np.square(array.astype(np.float64)).reshape(-1, array.shape[-1]).sum(axis=0)
                sums[i] = squares if sums[i].size == 0 else sums[i] + squares

        self.run(model, values, add, label)
        return [np.sqrt(total) for total in sums]

    def channel_means(self, model: ir.Model, values: Sequence[ir.Value], label: str) -> list[np.ndarray]:
        """Per-channel mean over all calibration tokens of each value (its last axis), float64."""
        sums, counts = [np.zeros(0)] * len(values), [0] * len(values)

        def add(arrays: list[np.ndarray]) -> None:
            for i, array in enumerate(arrays):
                rows = array.astype(np.float64).reshape(-1, array.shape[-1])
                sums[i] = rows.sum(axis=0) if sums[i].size == 0 else sums[i] + rows.sum(axis=0)
                counts[i] += rows.shape[0]

        self.run(model, values, add, label)
        return [total / count for total, count in zip(sums, counts)]

    def input_covariances(self, model: ir.Model, values: Sequence[ir.Value], label: str) -> list[np.ndarray]:
        """XᵀX over all calibration tokens of each value (channels of its last axis), in float64."""
        sums = [np.zeros(0)] * len(values)

        def add(arrays: list[np.ndarray]) -> None:
            for i, array in enumerate(arrays):
                rows = array.astype(np.float64).reshape(-1, array.shape[-1])
                sums[i] = rows.T @ rows if sums[i].size == 0 else sums[i] + rows.T @ rows

        self.run(model, values, add, label)
        return sums


def _session(model: ir.Model, values: Sequence[ir.Value], threads: int) -> ort.InferenceSession:
    """A session whose outputs are exactly `values` (the graph's own outputs are restored after)."""
    graph = model.graph
    kept = list(graph.outputs)
    graph.outputs.clear()
    graph.outputs.extend(values)
    try:
        proto = ir.to_proto(model)
    finally:
        graph.outputs.clear()
        graph.outputs.extend(kept)
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        raise BadInput("calibration runs models up to 2 GB in memory: this one is larger (not supported yet)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 4  # errors come back as exceptions; we print them as one line
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


InputSpec = tuple[str, Sequence[Any], type]


def graph_inputs(model: ir.Model) -> list[InputSpec]:
    """(name, shape, numpy dtype) of each graph input, for `calibration_feeds`."""
    return [(value.name, list(value.shape or ()), value.dtype.numpy()) for value in model.graph.inputs]


def calibration_feeds(inputs: Sequence[InputSpec], row: np.ndarray) -> dict[str, np.ndarray]:
    """input_ids, a full mask, positions (token types) and an empty past for one unpadded row (name, shape, dtype)."""
    length = len(row)
    feeds = {}
    for name, shape, dtype in inputs:
        if name == INPUT_IDS:
            feeds[name] = row[None].astype(np.int64)
        elif name == ATTENTION_MASK:
            feeds[name] = np.ones((1, length), np.int64)
        elif name == POSITION_IDS:
            feeds[name] = np.arange(length, dtype=np.int64)[None]
        elif name == TOKEN_TYPE_IDS:
            feeds[name] = np.zeros((1, length), np.int64)
        elif name.startswith(PAST_PREFIX):
            feeds[name] = np.zeros((1, shape[1], 0, shape[3]), dtype)
    return feeds


class CalibratedPass(OnnxforgePass):
    """A pass that measures activations: built from its config and the pipeline's shared calibration."""

    def __init__(self, config: PassConfig | None = None, calibration: Calibration | None = None) -> None:
        super().__init__(config)
        self.calibration = calibration

    def calibrated(self) -> Calibration:
        """The calibration; ValueError when the pass was built without one."""
        if self.calibration is None:
            raise ValueError(f"{type(self).__name__} needs calibration data (the compress pipeline provides it)")
        return self.calibration

    def input_statistics(self, model: ir.Model, projections: Sequence[Any], statistic: str, label: str) -> list:
        """`channel_norms`, `channel_means` or `input_covariances` of each projection's input (shared ones once)."""
        inputs = list(dict.fromkeys(proj.input for proj in projections))  # q/k/v and gate/up share one input
        measured = dict(zip(inputs, getattr(self.calibrated(), statistic)(model, inputs, label)))
        return [measured[proj.input] for proj in projections]
