"""Eval wall time: whole-sequence scoring against shared contexts (what `onnxforge eval` runs), same figures.

    .venv/bin/python benchmarks/eval_speed.py DIR [DIR ...] [--tasks arc_easy,wikitext2] [--threads 2]

Prints, per folder and task, both scorers' metrics, seconds and the speed-up, and the largest difference
between their metrics (they must agree to 1e-4).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxforge.eval.run import evaluate
from onnxforge.eval.scoring import onnx_logits, whole_sequence_scorer
from onnxforge.eval.shared_context import shared_context_scorer
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.session import SessionSettings
from onnxforge.runtime.text import TextCodec

LIMITS = {"arc_easy": None, "wikitext2": 40, "lambada": None}
METRICS = ("acc", "acc_norm", "perplexity")


def main() -> None:
    """Both scorers on every folder and task."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--tasks", default="arc_easy,wikitext2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        decoder = Decoder(folder, SessionSettings.with_threads(args.threads))
        encode = TextCodec(folder).encode
        for task in args.tasks.split(","):
            whole = evaluate(task, whole_sequence_scorer(onnx_logits(decoder)), encode, LIMITS[task], 4096, "whole")
            shared = evaluate(task, shared_context_scorer(decoder), encode, LIMITS[task], 4096, "shared")
            worst = max(abs(whole[m] - shared[m]) for m in METRICS if m in whole)
            rows.append({"folder": str(folder), "task": task, "whole_s": whole["seconds"], "shared_s": shared["seconds"],
                         "speedup": round(whole["seconds"] / shared["seconds"], 2), "worst_metric_diff": worst,
                         **{m: shared[m] for m in METRICS if m in shared}})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| folder | task | whole s | shared s | speed-up | metrics | worst difference |\n|---|---|---|---|---|---|---|")
    for row in rows:
        metrics = ", ".join(f"{m} {row[m]:.4f}" for m in METRICS if m in row)
        print(f"| {row['folder']} | {row['task']} | {row['whole_s']} | {row['shared_s']} | {row['speedup']}× | "
              f"{metrics} | {row['worst_metric_diff']:.1e} |")


if __name__ == "__main__":
    main()
