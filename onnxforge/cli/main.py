"""The `onnxforge` command: parse arguments, call the API, print results. Errors: exit 2 (bad input), 1."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from onnxforge.cli import (
    bench,
    bench_serve,
    bundle,
    chat,
    compress,
    demo,
    distill,
    embed,
    export,
    generate,
    passes,
    report,
    serve,
    teacher_text,
    validate,
)
from onnxforge.cli import eval as evaluate
from onnxforge.cli.output import ConsoleLogHandler, print_error
from onnxforge.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    OnnxforgeError,
    terminate,
    termination_requested,
)

COMMANDS = (export, validate, generate, chat, serve, evaluate, bench, bench_serve, report, compress, distill,
            teacher_text, bundle, embed, passes, demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per module of this package."""
    parser = argparse.ArgumentParser(prog="onnxforge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["onnxforge", *(sys.argv[1:] if argv is None else argv)])
    with _sigterm_unwinds():
        return _run_reporting_errors(args.run, args)


def _run_reporting_errors(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return run(args)
    except BaseException as error:  # noqa: BLE001 - the one place that turns failures into an exit status
        if termination_requested():  # whatever a library made of our Terminated (torch's exporter wraps it)
            print_error("terminated", "nothing was written")
            return EXIT_TERMINATED
        return _exit_status(error)


def _exit_status(error: BaseException) -> int:
    """Print the one line for `error` and return its status; re-raise what is not ours to report."""
    if isinstance(error, OnnxforgeError):
        print_error("error" if error.exit_status == EXIT_BAD_INPUT else "failed", str(error))
        return error.exit_status
    if isinstance(error, KeyboardInterrupt):
        print_error("interrupted", "nothing was written")
        return EXIT_INTERRUPTED
    if not isinstance(error, Exception) or os.environ.get("ONNXFORGE_DEBUG"):
        raise error
    print_error("failed", f"{type(error).__name__}: {error} (set ONNXFORGE_DEBUG=1 for the traceback)")
    return EXIT_FAILED


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM raises `Terminated` so that staged folders are removed as on Ctrl-C.

    A library may wrap our exception in one of its own (torch's exporter does) or swallow it, so
    the error handler and the staged folder's final rename ask `termination_requested()` instead.
    """
    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_libraries() -> None:
    """Keep library chatter off stderr so that our own lines stand out; show ours through the console."""
    logger = logging.getLogger("onnxforge")
    if not any(isinstance(handler, ConsoleLogHandler) for handler in logger.handlers):
        logger.addHandler(ConsoleLogHandler())
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore")
