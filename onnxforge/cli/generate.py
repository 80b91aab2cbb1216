"""`onnxforge generate DIR PROMPT...`: answer prompts (one batch) through ONNX Runtime, no torch needed."""

from __future__ import annotations

import argparse
import sys

from onnxforge.cli.output import print_generation_stats, print_json, show
from onnxforge.cli.runtime_options import add_runtime_arguments, generator_from_args, settings_from_args
from onnxforge.errors import EXIT_OK, BadInput


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The generate sub-command."""
    generate = commands.add_parser("generate", help="answer prompts with an exported folder (no torch needed)")
    add_runtime_arguments(generate, max_new_tokens=256)
    generate.add_argument("prompt", metavar="PROMPT", nargs="+", help="one or more prompts (several: one batch)")
    generate.add_argument("--raw", action="store_true", help="do not wrap the prompt in the chat template")
    generate.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    generate.add_argument("--truncate", action="store_true", help="keep the last tokens of a prompt too long to fit")
    generate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    generate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Answer each PROMPT (batched); stream the single-prompt case when asked; print text or JSON."""
    settings = settings_from_args(args, args.truncate)
    if args.stream and len(args.prompt) > 1:
        raise BadInput("--stream takes one prompt: drop --stream to answer several prompts in a batch")
    generator = generator_from_args(args)
    run = generator.run([generator.prompt_ids(prompt, args.raw) for prompt in args.prompt], settings)
    if args.stream and not args.json:
        for deltas in run:
            sys.stdout.write(deltas[0])
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        run.complete()
    if args.json:
        print_json(run.to_json())
    elif not args.stream:
        show("\n\n".join(completion.text for completion in run.completions))
    print_generation_stats(run)
    return EXIT_OK
