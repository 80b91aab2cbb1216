"""`onnxforge passes`: the passes a recipe can name, with their fields, and the shipped recipes."""

from __future__ import annotations

import argparse

from onnxforge.cli.output import print_passes
from onnxforge.errors import EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The passes sub-command."""
    listing = commands.add_parser("passes", help="list the passes recipes can use and the shipped recipes")
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print every pass and every shipped recipe."""
    from onnxforge.passes.recipe import named_recipes
    from onnxforge.passes.registry import registry

    print_passes(registry(), sorted(named_recipes()))
    return EXIT_OK
