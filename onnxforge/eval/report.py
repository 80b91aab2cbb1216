"""`onnxforge report RUN_DIR`: a Markdown report with a table and PNG plots from bench and eval results.

RUN_DIR holds `bench.json` (`onnxforge bench ... --out RUN_DIR`) and `eval.jsonl` (one line per
`onnxforge eval ... --out RUN_DIR`). Rows are models/engines; evaluation figures join a bench row
by model (a folder path, or the torch source name for the torch anchor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput

MIB = 1024 * 1024
METRICS = (("wikitext2", "perplexity", "WikiText-2 ppl"), ("arc_easy", "acc", "ARC-Easy acc"),
           ("arc_easy", "acc_norm", "ARC-Easy acc_norm"), ("lambada", "acc", "LAMBADA acc"))


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """bench.json and the eval lines of RUN_DIR; BadInput when there is no bench.json."""
    bench_file, eval_file = run_dir / "bench.json", run_dir / "eval.jsonl"
    if not bench_file.is_file():
        raise BadInput(f"'{run_dir}' has no bench.json: run onnxforge bench DIR --out {run_dir} first")
    evals = [json.loads(line) for line in eval_file.read_text().splitlines() if line] if eval_file.is_file() else []
    return json.loads(bench_file.read_text()), evals


def write_report(run_dir: Path) -> Path:
    """RUN_DIR/report.md with its two plots; returns the report's path."""
    bench, evals = read_run(run_dir)
    rows = _rows(bench, evals)
    _plot_size_vs_perplexity(rows, run_dir / "size_vs_perplexity.png")
    _plot_decode_speed(bench, run_dir / "decode_tokens_per_s.png")
    commands = [bench["command"], *sorted({e["command"] for e in evals})]
    lines = ["# onnxforge report", "", _table(rows), "", "![size vs perplexity](size_vs_perplexity.png)", "",
             "![decode tokens/s](decode_tokens_per_s.png)", "", "Produced by:", "",
             *[f"- `{command}`" for command in commands], f"- `onnxforge report {run_dir}`", ""]
    skipped = [run for run in bench["runs"] if "skipped" in run]
    if skipped:
        lines += ["Skipped anchors:", "", *[f"- {run['engine']}: {run['skipped']}" for run in skipped], ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _rows(bench: dict[str, Any], evals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for run in bench["runs"]:
        if "skipped" in run or run["batch"] != 1:
            continue
        figures = {f"{e['task']}.{key}": e[key] for e in evals if e.get("model") == run["model"]
                   for _, key, _ in METRICS if key in e}
        rows.append({**run, **figures})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["engine", "MiB on disk", "decode tok/s", "TTFT ms", "peak RSS MiB", *(label for _, _, label in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["engine"], f"{row['model_bytes'] / MIB:.0f}" if row["model_bytes"] else "-",
                 f"{row['decode_tokens_per_s']['median']:.1f}", f"{row['ttft_s']['median'] * 1000:.0f}",
                 f"{row['peak_rss_bytes'] / MIB:.0f}"]
        cells += [_cell(row.get(f"{task}.{key}")) for task, key, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _plot_size_vs_perplexity(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(r["model_bytes"] / MIB, r["wikitext2.perplexity"], r["engine"]) for r in rows
              if r.get("wikitext2.perplexity") and r["model_bytes"]]
    figure, axes = plt.subplots(figsize=(6, 4) if len(points) < 8 else (9, 7))
    for size, perplexity, label in points:
        axes.scatter(size, perplexity)
        axes.annotate(label, (size, perplexity), fontsize=8, xytext=(4, 4), textcoords="offset points")
    axes.set(xlabel="MiB on disk", ylabel="WikiText-2 perplexity", title="size vs perplexity")
    perplexities = [p for _, p, _ in points]
    if perplexities and max(perplexities) > 20 * min(perplexities):
        axes.set_yscale("log")  # collapsed models would flatten every other point
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_decode_speed(bench: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = [r for r in bench["runs"] if "skipped" not in r]
    labels = [f"{r['engine']} (batch {r['batch']})" for r in runs]
    speeds = [r["decode_tokens_per_s"]["median"] for r in runs]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(runs) + 1.2))
    bars = axes.barh(labels, speeds)
    axes.bar_label(bars, fmt="%.1f", padding=3, fontsize=8)
    axes.invert_yaxis()
    axes.set(xlabel="decode tokens/s (median)", title=f"decode speed, {bench['settings']['threads']} threads")
    axes.margins(x=0.15)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
