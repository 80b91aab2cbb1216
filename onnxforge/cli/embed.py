"""`onnxforge embed DIR TEXT... [--json]`: sentence embeddings from an encoder folder (no torch needed)."""

from __future__ import annotations

import argparse

from rich.table import Table

from onnxforge.cli.output import print_json, show
from onnxforge.cli.runtime_options import add_provider_arguments, session_settings_from_args
from onnxforge.errors import EXIT_OK
from onnxforge.runtime.embed import Embedder, unit_vectors


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The embed sub-command."""
    command = commands.add_parser("embed", help="sentence embeddings from an exported encoder folder")
    command.add_argument("folder", metavar="DIR", help="a folder exported from an encoder (all-minilm-l6-v2, ...)")
    command.add_argument("texts", metavar="TEXT", nargs="+", help="one or more texts")
    command.add_argument("--batch-size", type=int, default=32, help="texts per model call (default %(default)s)")
    command.add_argument("--json", action="store_true", help="print one JSON object with the vectors")
    add_provider_arguments(command)
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed the texts; print the vectors as JSON, or their size and cosine similarities."""
    embedder = Embedder(args.folder, session_settings_from_args(args))
    result = embedder.embed(args.texts, args.batch_size)
    if args.json:
        print_json({"model": embedder.name, "dimensions": embedder.dimensions, "tokens": result.tokens,
                    "embeddings": result.vectors.tolist(), "seconds": round(result.seconds, 4)})
        return EXIT_OK
    unit = unit_vectors(result.vectors)
    similarity = unit @ unit.T
    table = Table(title=f"{len(args.texts)} embeddings of {embedder.dimensions} dimensions "
                        f"({result.seconds * 1000:.0f} ms in the model); cosine similarities")
    table.add_column("text")
    for index in range(len(args.texts)):
        table.add_column(f"#{index + 1}", justify="right")
    for index, text in enumerate(args.texts):
        label = f"#{index + 1} {text[:40]}{'…' if len(text) > 40 else ''} ({result.tokens[index]} tokens)"
        table.add_row(label, *(f"{value:.3f}" for value in similarity[index]))
    show(table)
    return EXIT_OK
