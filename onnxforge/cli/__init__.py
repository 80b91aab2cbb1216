"""The `onnxforge` command line: one module per command, each parsing, calling the API and printing."""

from onnxforge.cli.main import main

__all__ = ["main"]
