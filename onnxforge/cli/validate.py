"""`onnxforge validate DIR`: re-check an exported folder against its torch source."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.cli.output import print_parity
from onnxforge.errors import EXIT_FAILED, EXIT_OK
from onnxforge.exporter.defaults import DEFAULT_TOLERANCE


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The validate sub-command."""
    validate = commands.add_parser("validate", help="check an exported folder against its torch source")
    validate.add_argument("dir", metavar="DIR")
    validate.add_argument("--against", metavar="SOURCE", help="torch source (default: the one in onnxforge.json)")
    validate.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs logits difference")
    validate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check parity, print it; exit 1 when it failed."""
    from onnxforge.exporter.revalidate import revalidate

    parity = revalidate(Path(args.dir), args.against, args.tolerance)
    print_parity(parity)
    return EXIT_OK if parity["passed"] else EXIT_FAILED
