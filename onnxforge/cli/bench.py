"""`onnxforge bench DIR...`: time folders and the engines we compete with, each in its own process."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.cli.output import print_bench, print_json
from onnxforge.errors import EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The bench sub-command."""
    bench = commands.add_parser("bench", help="time folders and competing engines, each in its own process")
    bench.add_argument("dirs", metavar="DIR", nargs="+")
    bench.add_argument("--anchors", metavar="LIST", help="comma-separated: torch,optimum,genai,llamacpp")
    bench.add_argument("--out", metavar="RUN_DIR", help="write RUN_DIR/bench.json (for onnxforge report)")
    bench.add_argument("--threads", type=int, default=2, help="threads of every engine (default %(default)s)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default %(default)s)")
    bench.add_argument("--new-tokens", type=int, default=64, help="tokens per run (default %(default)s)")
    bench.add_argument("--batch", type=int, default=8, help="the larger batch for our runtime (default %(default)s)")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Time every engine, print the table (and the JSON report)."""
    from onnxforge.eval.bench import BenchSettings, run_bench

    anchors = [name.strip() for name in args.anchors.split(",") if name.strip()] if args.anchors else []
    settings = BenchSettings(args.threads, args.repeats, args.new_tokens, args.batch)
    out = Path(args.out) if args.out else None
    report = run_bench([Path(d) for d in args.dirs], anchors, settings, out, args.command_line)
    print_bench(report, json_mode=args.json)
    if args.json:
        print_json(report)
    return EXIT_OK
