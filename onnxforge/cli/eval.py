"""`onnxforge eval DIR --task T`: perplexity or task accuracy through ONNX Runtime (and torch, as reference)."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.cli.output import print_eval, print_json
from onnxforge.errors import EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The eval sub-command."""
    from onnxforge.eval.run import TASKS

    evaluate = commands.add_parser("eval", help="perplexity / task accuracy of a folder, through onnxruntime")
    evaluate.add_argument("dir", metavar="DIR")
    evaluate.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    evaluate.add_argument("--limit", type=int, help="first N windows / questions / texts (default: all)")
    evaluate.add_argument("--reference", metavar="SOURCE", help="also evaluate this torch source (needs [export])")
    evaluate.add_argument("--threads", type=int, default=0, help="threads for onnxruntime and torch (0 = all)")
    evaluate.add_argument("--token-budget", type=int, default=2048, help="tokens per scoring batch")
    evaluate.add_argument("--out", metavar="RUN_DIR", help="append the results to RUN_DIR/eval.jsonl (for report)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, record the results when asked, print the table (and the JSON object)."""
    from onnxforge.eval.run import append_results, evaluate_with_reference

    results = evaluate_with_reference(Path(args.dir), args.task, args.limit, args.threads, args.token_budget,
                                      args.reference)
    if args.out:
        append_results(Path(args.out), results, args.command_line)
    print_eval(results, json_mode=args.json)
    if args.json:
        print_json({**results[0], "reference": results[1]} if args.reference else results[0])
    return EXIT_OK
