"""`onnxforge compress IN OUT --recipe R` and `onnxforge passes` (what recipes can use)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.table import Table

from onnxforge.show import stdout

_MIB = 1024 * 1024


def add_compress_parsers(commands: argparse._SubParsersAction) -> None:
    """The compress and passes sub-commands."""
    compress = commands.add_parser("compress", help="apply a recipe of graph passes to a model folder")
    compress.add_argument("source", metavar="IN", help="an onnxforge model folder")
    compress.add_argument("out", metavar="OUT", help="output folder (written all or nothing)")
    compress.add_argument(
        "--recipe", required=True, help="a shipped recipe name (see `onnxforge passes`) or a .toml file"
    )
    compress.add_argument("--force", action="store_true", help="replace OUT if it exists")
    compress.add_argument(
        "--calibration-file", metavar="FILE", help=".jsonl with 'text' or a .txt file (default: shipped)"
    )
    compress.add_argument(
        "--calibration-samples", type=int, default=32, help="rows of calibration text (default %(default)s)"
    )
    compress.add_argument("--calibration-tokens", type=int, default=256, help="tokens per row (default %(default)s)")
    compress.add_argument(
        "--threads", type=int, default=2, help="onnxruntime threads for calibration (default %(default)s)"
    )
    compress.set_defaults(run=run_compress)

    listing = commands.add_parser("passes", help="list the passes recipes can use and the shipped recipes")
    listing.set_defaults(run=run_list_passes)


def run_compress(args: argparse.Namespace) -> int:
    """Load the recipe, compress, print what each pass did."""
    from onnxforge.passes.calibration import CalibrationSettings
    from onnxforge.passes.pipeline import compress
    from onnxforge.passes.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    settings = CalibrationSettings(
        args.calibration_samples, args.calibration_tokens, args.calibration_file, args.threads
    )
    manifest = compress(Path(args.source), Path(args.out), recipe, settings, args.force)
    print_compress_summary(Path(args.out), manifest, len(recipe.steps))
    return 0


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
    stdout.print(table)
    sanity = manifest["sanity"]
    stdout.print(
        f"size on disk {manifest['files_bytes']['total'] / _MIB:.1f} MiB; sanity run on {sanity['tokens']} tokens: "
        f"top-1 agreement with the input {sanity['top1_agreement']:.2%}, max |Δ logits| {sanity['max_abs_logits_diff']:.3g}"
    )


def _short(details: dict) -> str:
    text = ", ".join(f"{key}={_value(value)}" for key, value in details.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _value(value: object) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{value[0]}, {value[1]}, ... {len(value)} values]"
    return str(value)


def run_list_passes(args: argparse.Namespace) -> int:
    """Every pass with its fields and defaults, and every shipped recipe."""
    from onnxforge.passes.recipe import named_recipes
    from onnxforge.passes.registry import registry

    table = Table(title="passes")
    for column in ("name", "what it does", "fields (defaults)"):
        table.add_column(column)
    for name, entry in sorted(registry().items()):
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(entry.config))
        table.add_row(name, entry.summary + (" (calibrated)" if entry.data_aware else ""), fields or "-")
    stdout.print(table)
    stdout.print("shipped recipes: " + ", ".join(sorted(named_recipes())))
    return 0
