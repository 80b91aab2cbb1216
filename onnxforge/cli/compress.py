"""`onnxforge compress IN OUT --recipe R`: apply a recipe of graph passes to a model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.cli.output import print_compress_summary
from onnxforge.errors import EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The compress sub-command."""
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
    compress.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
    return EXIT_OK
