"""`onnxforge report RUN_DIR`: a Markdown report with plots from bench and eval results."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.cli.output import show
from onnxforge.errors import EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The report sub-command."""
    report = commands.add_parser("report", help="Markdown report with plots from bench and eval results")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write RUN_DIR/report.md and print its path."""
    from onnxforge.eval.report import write_report

    show(str(write_report(Path(args.run_dir))))
    return EXIT_OK
