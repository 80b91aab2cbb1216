"""Tables printed on stdout after a command: what was produced and how it measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from onnxforge.progress import console

_MIB = 1024 * 1024
stdout = Console(highlight=False)


def print_parity(parity: dict[str, Any]) -> None:
    """The parity figures: logits differences per case, greedy agreement, verdict."""
    table = Table(title="parity with torch", show_header=True)
    table.add_column("check")
    table.add_column("result", justify="right")
    for case, diff in parity["max_abs_logits_diff"].items():
        table.add_row(f"max |Δ logits| {case}", f"{diff:.2e}")
    table.add_row("tolerance", f"{parity['tolerance']:.0e}")
    table.add_row(f"greedy {parity['greedy_new_tokens']} tokens identical", parity["greedy_identical"])
    table.add_row("tokenizer identical", str(parity["tokenizer_identical"]))
    table.add_row("verdict", "[green]passed[/green]" if parity["passed"] else "[red]FAILED[/red]")
    stdout.print(table)


def print_export_summary(out: Path, manifest: dict[str, Any]) -> None:
    """Where the folder is, how big, how long it took, and its parity when checked."""
    table = Table(title=f"exported {manifest['source']['name']} -> {out}", show_header=False)
    table.add_row("size on disk", f"{manifest['files_bytes']['total'] / _MIB:.1f} MiB")
    table.add_row("parameters", f"{manifest['parameters']:,}")
    table.add_row("graph nodes", f"{manifest['nodes']:,} (opset {manifest['opset']})")
    table.add_row("export time", f"{manifest['export_seconds']:.1f} s")
    table.add_row("peak RSS", f"{manifest['peak_rss_bytes'] / _MIB:.0f} MiB")
    stdout.print(table)
    if "parity" in manifest:
        print_parity(manifest["parity"])


def print_eval(results: list[dict[str, Any]]) -> None:
    """One row per engine with the task's metrics, then the settings that make them comparable."""
    metrics = [key for key in results[0] if key not in ("task", "n", "settings", "seconds", "model", "engine")]
    table = Table(title=f"{results[0]['task']}, n = {results[0]['n']}")
    for column in ("engine", *metrics, "seconds"):
        table.add_column(column)
    for result in results:
        table.add_row(f"{result['engine']} ({result['model']})", *(_figure(result[key]) for key in metrics),
                      f"{result['seconds']:.0f}")
    console.print(table)
    console.print(f"[dim]settings: {results[0]['settings']}[/dim]")


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_bench(report: dict[str, Any]) -> None:
    """One row per engine run (median, with min-max), skipped anchors with their reason."""
    settings = report["settings"]
    table = Table(title=f"{settings['new_tokens']} new tokens, {settings['threads']} threads, "
                        f"median (min-max) of {settings['repeats']}")
    for column in ("engine", "batch", "MiB on disk", "load s", "TTFT ms", "decode tok/s", "prefill tok/s", "peak RSS MiB"):
        table.add_column(column)
    for run in report["runs"]:
        if "skipped" in run:
            table.add_row(run["engine"], "", "", "", "", f"skipped: {run['skipped']}", "", "")
            continue
        table.add_row(run["engine"], str(run["batch"]), f"{run['model_bytes'] / _MIB:.0f}" if run["model_bytes"] else "-",
                      f"{run['load_s']:.1f}", f"{run['ttft_s']['median'] * 1000:.0f}", _spread(run["decode_tokens_per_s"]),
                      f"{run['prefill_tokens_per_s']['median']:.0f}", f"{run['peak_rss_bytes'] / _MIB:.0f}")
    console.print(table)


def _spread(figure: dict[str, float]) -> str:
    return f"{figure['median']:.1f} ({figure['min']:.1f}-{figure['max']:.1f})"
