"""The README's compression and quantisation tables: every recipe on one folder, evaluated and timed in one run.

    .venv/bin/python benchmarks/compression_table.py SOURCE --work DIR --out RUN_DIR [--recipes a,b,...]
        [--anchors genai,llamacpp] [--answers] [--table NAME.md]

For each recipe: `onnxforge compress SOURCE DIR/RECIPE --recipe RECIPE`, then
`onnxforge eval DIR/RECIPE --task wikitext2 --limit 40` and `--task arc_easy` (all 570), each
appending to RUN_DIR/eval.jsonl; then one `onnxforge bench` over all folders (batch 1, so the
speeds are comparable within one run) into RUN_DIR/bench.json, `onnxforge report RUN_DIR` for the
plots, and RUN_DIR/compression.md: one row per recipe with parameters, non-zero parameters, size,
decode tok/s, perplexity, ARC-Easy and the commands. Steps already done (folder exists, eval line
present) are skipped, so an interrupted run continues where it stopped. `--anchors` adds the
anchor engines to the same bench run (their rows carry size, speed and TTFT; our scorer cannot
run their graphs); `--answers` adds each model's greedy answer to a few fixed chat prompts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ONNXFORGE = [sys.executable, "-m", "onnxforge.cli"]
DEFAULT_RECIPES = (
    "fuse",
    "prune-ffn-10-magnitude",
    "prune-ffn-10",
    "prune-ffn-25-magnitude",
    "prune-ffn-25",
    "prune-ffn-40-magnitude",
    "prune-ffn-40",
    "prune-heads-25",
    "prune-kv-groups-25",
    "drop-layers-2",
    "drop-layers-4",
    "sparse-50-magnitude",
    "sparse-50",
    "sparse-2of4",
    "lowrank-95-plain",
    "lowrank-95",
    "lowrank-90-plain",
    "lowrank-90",
    "lowrank-75-plain",
    "lowrank-75",
)
TASKS = (("wikitext2", ["--limit", "40"]), ("arc_easy", []))
PROMPTS = ("What is the capital of France?", "Name the largest planet in the solar system.", "What is 12 times 3?")
ANSWER_TOKENS = 24
MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="where the compressed folders go")
    parser.add_argument("--out", type=Path, required=True, help="RUN_DIR for eval.jsonl, bench.json, report")
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    parser.add_argument("--skip-bench", action="store_true", help="evaluate only (bench later)")
    parser.add_argument("--anchors", default="", help="anchor engines for the bench run, e.g. genai,llamacpp")
    parser.add_argument("--answers", action="store_true", help="add greedy answers to fixed prompts")
    parser.add_argument("--table", default="compression.md", help="file name of the table in RUN_DIR")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    folders = {"fp32": args.source}
    for recipe in args.recipes.split(","):
        folders[recipe] = args.work / recipe
        if not folders[recipe].exists():
            _run([*ONNXFORGE, "compress", str(args.source), str(folders[recipe]), "--recipe", recipe])
    for folder in folders.values():
        for task, extra in TASKS:
            if not _evaluated(args.out, folder, task):
                _run(
                    [*ONNXFORGE, "eval", str(folder), "--task", task, *extra, "--threads", "2", "--out", str(args.out)]
                )
    if not args.skip_bench:
        anchors = ["--anchors", args.anchors] if args.anchors else []
        _run([*ONNXFORGE, "bench", *map(str, folders.values()), *anchors, "--batch", "1", "--out", str(args.out)])
        _run([*ONNXFORGE, "report", str(args.out)])
    table = _table(args.out, args.source, folders)
    if args.answers:
        table += _answers(args.out, folders)
    (args.out / args.table).write_text(table)
    print(table)


def _run(command: list[str]) -> None:
    print("$", " ".join(command[2:]).replace("onnxforge.cli", "onnxforge"), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def _evaluated(run_dir: Path, folder: Path, task: str) -> bool:
    path = run_dir / "eval.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
    return any(e["task"] == task and e["model"] == str(folder) for e in lines)


def _table(run_dir: Path, source: Path, folders: dict[str, Path]) -> str:
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line]
    bench_file = run_dir / "bench.json"
    runs = json.loads(bench_file.read_text())["runs"] if bench_file.is_file() else []
    lines = [
        "| recipe | parameters | non-zero | MiB on disk | decode tok/s | TTFT ms | WikiText-2 ppl | ARC-Easy acc | acc_norm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for recipe, folder in folders.items():
        manifest = json.loads((folder / "onnxforge.json").read_text())
        found = {(e["task"]): e for e in evals if e["model"] == str(folder)}
        run = next((r for r in runs if r.get("model") == str(folder.resolve())), {})
        wiki, arc = found.get("wikitext2", {}), found.get("arc_easy", {})
        lines.append(
            f"| {recipe} | {manifest['parameters'] / 1e6:.1f} M | "
            f"{manifest.get('nonzero_parameters', manifest['parameters']) / 1e6:.1f} M | "
            f"{_model_bytes(manifest) / MIB:.1f} | {_speed(run)} | {_ttft(run)} | "
            f"{wiki.get('perplexity', float('nan')):.2f} | {arc.get('acc', float('nan')):.4f} | {arc.get('acc_norm', float('nan')):.4f} |"
        )
    ours = {str(folder.resolve()) for folder in folders.values()}
    for run in runs:
        if run.get("model") not in ours and "decode_tokens_per_s" in run:
            size = run.get("model_bytes", 0) / MIB
            lines.append(
                f"| {run['engine']} (anchor) | - | - | {size:.1f} | {_speed(run)} | {_ttft(run)} | - | - | - |"
            )
    lines += [
        "",
        f"Each row: `onnxforge compress {source} DIR/RECIPE --recipe RECIPE`; evaluated with",
        "`onnxforge eval DIR/RECIPE --task wikitext2 --limit 40 --threads 2` and `--task arc_easy --threads 2`;",
        "timed together by `onnxforge bench DIR/* --batch 1` (2 threads, 64 new tokens, median of 3);",
        "MiB on disk: model.onnx + its external data (the anchors: their model files, as bench counts them).",
        "",
    ]
    return "\n".join(lines)


def _model_bytes(manifest: dict) -> int:
    return sum(manifest["files_bytes"].get(name, 0) for name in ("model.onnx", "model.onnx_data"))


def _speed(run: dict) -> str:
    return f"{run['decode_tokens_per_s']['median']:.1f}" if "decode_tokens_per_s" in run else "-"


def _ttft(run: dict) -> str:
    return f"{1000 * run['ttft_s']['median']:.0f}" if "ttft_s" in run else "-"


def _answers(run_dir: Path, folders: dict[str, Path]) -> str:
    """Greedy answers of every folder to PROMPTS (chat template, 24 new tokens), cached in answers.json."""
    path = run_dir / "answers.json"
    answers = json.loads(path.read_text()) if path.is_file() else {}
    for recipe, folder in folders.items():
        if recipe not in answers:
            command = [*ONNXFORGE, "generate", str(folder), *PROMPTS, "--max-new-tokens", str(ANSWER_TOKENS), "--json"]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            answers[recipe] = [row["text"] for row in result["results"]]
            path.write_text(json.dumps(answers, indent=1))
    lines = ["", "Greedy answers (`onnxforge generate DIR PROMPTS... --max-new-tokens 24`, chat template):", ""]
    lines += ["| recipe | " + " | ".join(PROMPTS) + " |", "|---" * (len(PROMPTS) + 1) + "|"]
    for recipe, texts in answers.items():
        cells = [" ".join(text.split()).replace("|", "/") for text in texts]
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
