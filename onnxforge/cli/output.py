"""Everything the commands print: results on stdout, logs, progress and errors on stderr.

`--json` makes stdout hold one JSON object and nothing else: the tables a command would print
there go to stderr instead. Progress (spinners, bars) lives in `onnxforge.progress`, on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from onnxforge.progress import console

_MIB = 1024 * 1024
stdout = Console(highlight=False)


def show(result: RenderableType, json_mode: bool = False) -> None:
    """A result on stdout (text as it is, tables through rich); on stderr when stdout is for JSON."""
    if json_mode:
        console.print(result)
    elif isinstance(result, str):
        print(result)
    else:
        stdout.print(result)


def print_json(report: dict[str, Any]) -> None:
    """The one JSON object of a `--json` run, on stdout."""
    print(json.dumps(report))


def print_error(label: str, message: str) -> None:
    """One red line on stderr: `error: ...` (bad input), `failed: ...` (our fault), `interrupted: ...`."""
    color = "yellow" if label in ("interrupted", "terminated") else "red"
    console.print(f"[{color}]{label}:[/{color}] {escape(message)}", soft_wrap=True)


class ConsoleLogHandler(logging.Handler):
    """Our own log lines (such as a provider fallback) as one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[yellow]{record.levelname.lower()}:[/yellow] {escape(record.getMessage())}", soft_wrap=True)


def print_parity(parity: dict[str, Any]) -> None:
    """The parity figures: logits differences per case, greedy agreement, verdict."""
    table = Table(title="parity with torch", show_header=True)
    table.add_column("check")
    table.add_column("result", justify="right")
    if "min_embedding_cosine" in parity:  # an encoder
        table.add_row(f"min sentence-embedding cosine ({parity['texts']} texts)",
                      f"{parity['min_embedding_cosine']:.6f}")
        table.add_row("max |Δ last_hidden_state|", f"{parity['max_abs_hidden_diff']:.2e}")
        table.add_row("verdict", "[green]passed[/green]" if parity["passed"] else "[red]FAILED[/red]")
        show(table)
        return
    for case, diff in parity["max_abs_logits_diff"].items():
        table.add_row(f"max |Δ logits| {case}", f"{diff:.2e}")
    table.add_row("tolerance", f"{parity['tolerance']:.0e}")
    table.add_row(f"greedy {parity['greedy_new_tokens']} tokens identical", parity["greedy_identical"])
    table.add_row("tokenizer identical", str(parity["tokenizer_identical"]))
    table.add_row("verdict", "[green]passed[/green]" if parity["passed"] else "[red]FAILED[/red]")
    show(table)


def print_export_summary(out: Path, manifest: dict[str, Any]) -> None:
    """Where the folder is, how big, how long it took, and its parity when checked."""
    table = Table(title=f"exported {manifest['source']['name']} -> {out}", show_header=False)
    table.add_row("size on disk", f"{manifest['files_bytes']['total'] / _MIB:.1f} MiB")
    table.add_row("parameters", f"{manifest['parameters']:,}")
    table.add_row("graph nodes", f"{manifest['nodes']:,} (opset {manifest['opset']})")
    table.add_row("export time", f"{manifest['export_seconds']:.1f} s")
    table.add_row("peak RSS", f"{manifest['peak_rss_bytes'] / _MIB:.0f} MiB")
    show(table)
    if "parity" in manifest:
        print_parity(manifest["parity"])


def print_eval(results: list[dict[str, Any]], json_mode: bool = False) -> None:
    """One row per engine with the task's metrics, then the settings that make them comparable."""
    metrics = [key for key in results[0] if key not in ("task", "n", "settings", "seconds", "model", "engine")]
    table = Table(title=f"{results[0]['task']}, n = {results[0]['n']}", caption=f"settings: {results[0]['settings']}")
    for column in ("engine", *metrics, "seconds"):
        table.add_column(column)
    for result in results:
        table.add_row(f"{result['engine']} ({result['model']})", *(_figure(result[key]) for key in metrics),
                      f"{result['seconds']:.0f}")
    show(table, json_mode)


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_bench(report: dict[str, Any], json_mode: bool = False) -> None:
    """One row per engine run (median, with min-max), skipped anchors with their reason."""
    settings = report["settings"]
    bandwidth = report.get("read_bandwidth_bytes_per_s", 0) / 1e9
    table = Table(title=f"{settings['new_tokens']} new tokens, {settings['threads']} threads, "
                        f"median (min-max) of {settings['repeats']}; memory reads {bandwidth:.1f} GB/s")
    for column in ("engine", "batch", "MiB on disk", "load s", "TTFT ms", "decode tok/s", "prefill tok/s",
                   "peak RSS MiB", "GB/s read (of the limit)"):
        table.add_column(column)
    for run in report["runs"]:
        if "skipped" in run:
            table.add_row(run["engine"], "", "", "", "", f"skipped: {run['skipped']}", "", "", "")
            continue
        size = f"{run['model_bytes'] / _MIB:.0f}" if run["model_bytes"] else "-"
        achieved = (f"{run['achieved_bytes_per_s'] / 1e9:.1f} ({run['bandwidth_fraction']:.0%})"
                    if "achieved_bytes_per_s" in run else "-")
        table.add_row(run["engine"], str(run["batch"]), size, f"{run['load_s']:.1f}",
                      f"{run['ttft_s']['median'] * 1000:.0f}", _spread(run["decode_tokens_per_s"]),
                      f"{run['prefill_tokens_per_s']['median']:.0f}", f"{run['peak_rss_bytes'] / _MIB:.0f}", achieved)
    show(table, json_mode)


def print_serve_bench(reports: list[dict[str, Any]], json_mode: bool = False) -> None:
    """One row per offered load: throughput, and median / p99 of TTFT, time per output token, latency."""
    load = reports[0]["load"]
    table = Table(title=f"{reports[0]['model']} at {reports[0]['url']}: {load['requests']} requests, "
                        f"{load['input_tokens']} in / {load['output_tokens']} out, rate {load['rate']}")
    for column in ("concurrency", "done", "failed", "req/s", "out tok/s", "TTFT ms p50 / p99",
                   "TPOT ms p50 / p99", "ITL ms p50 / p99", "latency s p50 / p99"):
        table.add_column(column)
    for report in reports:
        table.add_row(str(report["load"]["max_concurrency"]), str(report["completed"]), str(report["failed"]),
                      f"{report['request_throughput']:.2f}", f"{report['output_tokens_per_s']:.1f}",
                      *(_pair(report, name, scale) for name, scale in (("ttft_s", 1000), ("tpot_s", 1000),
                                                                        ("itl_s", 1000), ("e2e_s", 1))))
    show(table, json_mode)
    for error in {e for report in reports for e in report["errors"]}:
        console.print(f"[yellow]request error:[/yellow] {escape(error)}", soft_wrap=True)


def _pair(report: dict[str, Any], name: str, scale: float) -> str:
    median, p99 = report[f"{name}_median"], report[f"{name}_p99"]
    if median is None:
        return "-"
    digits = 0 if scale > 1 else 2
    return f"{median * scale:.{digits}f} / {p99 * scale:.{digits}f}"


def _spread(figure: dict[str, float]) -> str:
    return f"{figure['median']:.1f} ({figure['min']:.1f}-{figure['max']:.1f})"


def print_generation_stats(run: Any) -> None:
    """The timing line of a generation run, on stderr."""
    stats = run.stats
    new = sum(len(c.token_ids) for c in run.completions)
    console.print(f"[dim]{stats.prompt_tokens} prompt tokens, {new} new; first token {stats.prefill_s * 1000:.0f} ms, "
                  f"then {stats.decode_tokens_per_s:.1f} tokens/s ({run.provider}, "
                  f"{stats.overhead_s_per_step * 1000:.2f} ms/step outside onnxruntime)[/dim]")


def print_compress_summary(out: Path, manifest: dict, recent: int) -> None:
    """One row per pass of this run, then size and the sanity run."""
    table = Table(title=f"compressed -> {out}")
    for column in ("pass", "parameters", "weights MiB", "nodes", "details"):
        table.add_column(column, justify="left" if column in ("pass", "details") else "right")
    for record in manifest["passes"][-recent:]:
        details = {
            k: v for k, v in record.items() if not k.endswith(("_before", "_after")) and k not in ("pass", "config")
        }
        table.add_row(
            record["pass"],
            f"{record['parameters_before']:,} -> {record['parameters_after']:,}",
            f"{record['bytes_before'] / _MIB:.1f} -> {record['bytes_after'] / _MIB:.1f}",
            f"{record['nodes_before']:,} -> {record['nodes_after']:,}",
            _short(details),
        )
    show(table)
    sanity = manifest["sanity"]
    agreement = f"sentence-embedding cosine with the input {sanity['embedding_cosine']:.4f}" \
        if "embedding_cosine" in sanity else (f"top-1 agreement with the input {sanity['top1_agreement']:.2%}, "
                                              f"max |Δ logits| {sanity['max_abs_logits_diff']:.3g}")
    show(f"size on disk {manifest['files_bytes']['total'] / _MIB:.1f} MiB; sanity run on {sanity['tokens']} tokens: "
         f"{agreement}")


def _short(details: dict) -> str:
    text = ", ".join(f"{key}={_value(value)}" for key, value in details.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _value(value: object) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{value[0]}, {value[1]}, ... {len(value)} values]"
    return str(value)


def print_passes(passes: dict[str, Any], recipes: list[str]) -> None:
    """Every pass with its fields and defaults, and every shipped recipe."""
    from onnxforge.passes.calibration import CalibratedPass

    table = Table(title="passes")
    for column in ("name", "what it does", "fields (defaults)"):
        table.add_column(column)
    for name, cls in sorted(passes.items()):
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.config_class))
        table.add_row(name, cls.summary + (" (calibrated)" if issubclass(cls, CalibratedPass) else ""), fields or "-")
    show(table)
    show("shipped recipes: " + ", ".join(recipes))
