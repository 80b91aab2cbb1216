"""Perplexity against training tokens, one curve per student, from folders already distilled.

    .venv/bin/python benchmarks/learning_curves.py --out docs/distillation-run \
        --curve prune-ffn-25=/tmp/prune-ffn-25,/tmp/kd-ffn25-100k \
        --curve "int4 QAT=/tmp/int4,/tmp/qat-100k" [--reference /tmp/smol] [--limit 40]

Each folder of a curve is scored on WikiText-2 (the first `--limit` windows, as `onnxforge eval`);
its training tokens are read from its `distill` record (0 when it has none). Writes
OUT/learning_curves.json and OUT/learning_curves.png; the float reference is a dashed line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxforge.eval.run import evaluate_folder
from onnxforge.folder import read_manifest


def trained_tokens(folder: Path) -> int:
    """Training tokens of the folder's last distill record (0 for a folder never distilled)."""
    records = [r for r in read_manifest(folder).get("passes", []) if r.get("pass") == "distill"]
    return records[-1]["tokens_trained"] if records else 0


def perplexity(folder: Path, limit: int) -> float:
    return evaluate_folder(folder, "wikitext2", limit, threads=2, token_budget=2048)["perplexity"]


def plot(curves: dict[str, list[dict]], reference: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, points in curves.items():
        axes.plot([p["tokens"] for p in points], [p["perplexity"] for p in points], marker="o", label=label)
    if reference is not None:
        axes.axhline(reference, linestyle="--", color="grey", label=f"float export {reference:.2f}")
    axes.set(xlabel="training tokens (one run per point)", ylabel="WikiText-2 perplexity",
             title="recovery by distillation")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curve", action="append", required=True, metavar="LABEL=DIR,DIR,...")
    parser.add_argument("--reference", type=Path, help="the float folder the students came from")
    parser.add_argument("--limit", type=int, default=40, help="WikiText-2 windows (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    curves = {}
    for spec in args.curve:
        label, _, folders = spec.partition("=")
        points = [{"folder": folder, "tokens": trained_tokens(Path(folder)),
                   "perplexity": round(perplexity(Path(folder), args.limit), 4)} for folder in folders.split(",")]
        curves[label] = sorted(points, key=lambda p: p["tokens"])
        print(label, [(p["tokens"], p["perplexity"]) for p in curves[label]])
    reference = perplexity(args.reference, args.limit) if args.reference else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_curves.json").write_text(
        json.dumps({"limit": args.limit, "reference": reference, "curves": curves}, indent=1) + "\n")
    plot(curves, reference, args.out / "learning_curves.png")


if __name__ == "__main__":
    main()
