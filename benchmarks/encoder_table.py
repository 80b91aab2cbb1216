"""Encoder folders side by side: size, embedding agreement, retrieval and speed, against the first folder.

    .venv/bin/python benchmarks/encoder_table.py /tmp/minilm /tmp/minilm-int8 /tmp/minilm-int4 \
        --torch all-minilm-l6-v2 --out docs/encoders-run

The retrieval set is built from LAMBADA passages (evaluation text, never calibration or training):
each passage is cut in two at its middle word; the first halves are the queries, the second halves
the documents, and a query is answered when its own second half is its most similar document.
Per folder: MiB of model files, the mean and worst cosine of its sentence embeddings to the first
folder's, how often its nearest document is the first folder's, retrieval accuracy@1, and
embeddings/s at batch 1 and 32 through `onnxforge.runtime.embed` (2 threads). `--torch` adds the
same model in torch (sentence-transformers' pooling, 2 threads) as the speed reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from onnxforge.data import read_jsonl
from onnxforge.folder import MODEL_FILES
from onnxforge.runtime.embed import Embedder, unit_vectors
from onnxforge.runtime.session import SessionSettings


def retrieval_set(count: int) -> tuple[list[str], list[str]]:
    """(queries, documents): the first and second halves of `count` LAMBADA passages."""
    queries, documents = [], []
    for row in read_jsonl("lambada")[:count]:
        words = row["text"].split()
        queries.append(" ".join(words[: len(words) // 2]))
        documents.append(" ".join(words[len(words) // 2 :]))
    return queries, documents


def speed(embed: Any, texts: list[str], batch: int) -> float:
    """Embeddings per second of `embed(list_of_texts)` over `texts` in batches of `batch` (after a warm-up)."""
    embed(texts[:batch])
    start = time.perf_counter()
    for begin in range(0, len(texts), batch):
        embed(texts[begin : begin + batch])
    return len(texts) / (time.perf_counter() - start)


def folder_row(folder: Path, queries: list[str], documents: list[str], reference: dict[str, np.ndarray] | None,
               speed_texts: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One folder's figures, and its embeddings (the first folder's become the reference)."""
    embedder = Embedder(folder, SessionSettings.with_threads(2))
    vectors = {"queries": unit_vectors(embedder.embed(queries).vectors),
               "documents": unit_vectors(embedder.embed(documents).vectors)}
    nearest = (vectors["queries"] @ vectors["documents"].T).argmax(axis=1)
    reference = reference or vectors
    cosine = np.concatenate([(vectors[k] * reference[k]).sum(axis=1) for k in vectors])
    reference_nearest = (reference["queries"] @ reference["documents"].T).argmax(axis=1)
    row = {
        "folder": folder.name,
        "model_mib": round(sum((folder / name).stat().st_size for name in MODEL_FILES[:2]
                               if (folder / name).is_file()) / 2**20, 1),
        "mean_cosine": round(float(cosine.mean()), 5),
        "worst_cosine": round(float(cosine.min()), 5),
        "same_nearest_document": round(float((nearest == reference_nearest).mean()), 4),
        "retrieval_accuracy_at_1": round(float((nearest == np.arange(len(queries))).mean()), 4),
        "embeddings_per_s_batch_1": round(speed(lambda t: embedder.embed(t, 1), speed_texts[:64], 1), 1),
        "embeddings_per_s_batch_32": round(speed(lambda t: embedder.embed(t, 32), speed_texts, 32), 1),
    }
    return row, vectors


def torch_row(source: str, speed_texts: list[str]) -> dict[str, Any]:
    """The same model in torch with sentence-transformers' mean pooling: the speed reference."""
    import torch

    from onnxforge.exporter.encoder import EncoderWithPooling
    from onnxforge.models.encoders import load_encoder

    torch.set_num_threads(2)
    loaded = load_encoder(source)
    wrapper = EncoderWithPooling(loaded.model, loaded.facts).eval()

    def embed(texts: list[str]) -> None:
        batch = loaded.tokenizer(texts, padding=True, truncation=True, max_length=loaded.facts.max_seq_length,
                                 return_tensors="pt")
        with torch.no_grad():
            wrapper(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    return {"folder": f"torch ({source})", "embeddings_per_s_batch_1": round(speed(embed, speed_texts[:64], 1), 1),
            "embeddings_per_s_batch_32": round(speed(embed, speed_texts, 32), 1)}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (missing figures as a dash)."""
    columns = ["folder", "model_mib", "mean_cosine", "worst_cosine", "same_nearest_document",
               "retrieval_accuracy_at_1", "embeddings_per_s_batch_1", "embeddings_per_s_batch_32"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "–")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every folder and write encoders.json and encoders.md under --out."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="encoder folders; the first is the reference")
    parser.add_argument("--passages", type=int, default=500, help="LAMBADA passages in the retrieval set")
    parser.add_argument("--torch", metavar="SOURCE", help="also time this source in torch")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    queries, documents = retrieval_set(args.passages)
    speed_texts = documents[:256]
    rows, reference = [], None
    for folder in args.folders:
        row, vectors = folder_row(folder, queries, documents, reference, speed_texts)
        reference = reference or vectors
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.torch:
        rows.append(torch_row(args.torch, speed_texts))
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoders.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "encoders.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
