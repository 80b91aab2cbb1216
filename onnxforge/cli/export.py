"""`onnxforge export SOURCE OUT`: torch -> ONNX folder with KV cache, checked against torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.cli.output import print_export_summary
from onnxforge.errors import EXIT_OK
from onnxforge.exporter.defaults import DEFAULT_OPSET


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The export sub-command."""
    export = commands.add_parser("export", help="export a model to an ONNX folder with KV cache")
    export.add_argument("source", metavar="SOURCE",
                        help="smollm2-135m, a Hugging Face folder, a .gguf file or tiny:ARCH")
    export.add_argument("out", metavar="OUT", help="output folder (written all or nothing)")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    export.add_argument("--no-validate", action="store_true", help="skip the parity check against torch")
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print the folder's summary and parity."""
    from onnxforge.exporter.export import export_model

    manifest = export_model(args.source, Path(args.out), args.opset, args.force, validate=not args.no_validate)
    print_export_summary(Path(args.out), manifest)
    return EXIT_OK
