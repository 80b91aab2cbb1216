"""`onnxforge bench-serve URL`: a serving benchmark against any OpenAI-compatible server."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from onnxforge.cli.output import print_json, print_serve_bench
from onnxforge.errors import EXIT_OK, BadInput, missing_extra
from onnxforge.folder import read_tokenizer
from onnxforge.progress import console


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The bench-serve sub-command."""
    bench = commands.add_parser("bench-serve", help="offer a load to an OpenAI-compatible server and measure it")
    bench.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    bench.add_argument("--requests", type=int, default=64, help="requests per load (default %(default)s)")
    bench.add_argument("--rate", default="inf", help="Poisson arrivals per second, or inf: all at once (default)")
    bench.add_argument("--max-concurrency", default="16", metavar="C[,C...]",
                       help="requests in flight; a list runs one load per value (default %(default)s)")
    bench.add_argument("--input-tokens", type=int, default=128, help="prompt tokens (default %(default)s)")
    bench.add_argument("--output-tokens", type=int, default=128, help="tokens asked per request (default %(default)s)")
    bench.add_argument("--model", help="model id (default: the first one the server lists)")
    bench.add_argument("--api-key", help="sent as Authorization: Bearer KEY")
    bench.add_argument("--tokenizer", type=Path, metavar="DIR", help="a folder whose tokenizer.json cuts the prompts "
                                                                     "to exactly --input-tokens (default: by words)")
    bench.add_argument("--seed", type=int, default=0, help="prompts and arrival times (default %(default)s)")
    bench.add_argument("--plot", type=Path, metavar="PNG", help="throughput and p99 latency against concurrency")
    bench.add_argument("--out", type=Path, metavar="JSON", help="also write the reports to this file")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One load per concurrency level; a table (or JSON), optionally a PNG."""
    try:
        from onnxforge.eval.bench_serve import ServeLoad, bench_serve, plot_sweep
    except ImportError as error:
        raise missing_extra(error, "bench-serve", "serve") from None
    levels = _levels(args.max_concurrency)
    tokenizer = read_tokenizer(args.tokenizer) if args.tokenizer else None
    reports = []
    for level in levels:
        load = ServeLoad(args.requests, _rate(args.rate), level, args.input_tokens, args.output_tokens, args.seed)
        console.print(f"offering {load.requests} requests at concurrency {level} to {args.url}")
        reports.append(bench_serve(args.url, load, args.model, args.api_key, tokenizer))
    if args.plot:
        plot_sweep(reports, args.plot)
    result = {"reports": reports}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print_serve_bench(reports, args.json)
    if args.json:
        print_json(result)
    return EXIT_OK


def _levels(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise BadInput(f"--max-concurrency is '{text}': give positive integers separated by commas")
    return [int(part) for part in parts]


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise BadInput(f"--rate is '{text}': give requests per second, or inf") from None
    if not (rate > 0 or math.isinf(rate)):
        raise BadInput(f"--rate is {rate}: give a positive number, or inf")
    return rate
