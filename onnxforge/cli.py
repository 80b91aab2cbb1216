"""The `onnxforge` command: parse arguments, call the API, print results. Errors: exit 2 (bad input), 1."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from onnxforge.errors import BadInput
from onnxforge.progress import console

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _export(args: argparse.Namespace) -> int:
    from onnxforge.exporter.export import export_model
    from onnxforge.show import print_export_summary

    manifest = export_model(args.source, Path(args.out), args.opset, args.force, validate=not args.no_validate)
    print_export_summary(Path(args.out), manifest)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from onnxforge.exporter.revalidate import revalidate
    from onnxforge.show import print_parity

    parity = revalidate(Path(args.dir), args.against, args.tolerance)
    print_parity(parity)
    return EXIT_OK if parity["passed"] else EXIT_FAILED


def _generate(args: argparse.Namespace) -> int:
    from onnxforge.generate_cli import run_generate

    return run_generate(args)


def _chat(args: argparse.Namespace) -> int:
    from onnxforge.chat import chat_loop
    from onnxforge.generate_cli import generator_from_args, settings_from_args

    settings = settings_from_args(args)
    chat_loop(generator_from_args(args), settings)
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    import json

    from onnxforge.eval.run import evaluate_folder, evaluate_reference
    from onnxforge.show import print_eval

    folder = Path(args.dir)
    results = [{**evaluate_folder(folder, args.task, args.limit, args.threads, args.token_budget),
                "model": str(folder.resolve()), "engine": "onnxruntime"}]
    if args.reference:
        reference = evaluate_reference(folder, args.reference, args.task, args.limit, args.threads, args.token_budget)
        results.append({**reference, "model": args.reference, "engine": "torch"})
    print_eval(results)
    command = args.command_line
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with (Path(args.out) / "eval.jsonl").open("a", encoding="utf-8") as lines:
            lines.writelines(json.dumps({**result, "command": command}) + "\n" for result in results)
    if args.json:
        print(json.dumps({**results[0], "reference": results[1]} if args.reference else results[0]))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from onnxforge.eval.report import write_report

    print(write_report(Path(args.run_dir)))
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    import json

    from onnxforge.eval.bench import BenchSettings, run_bench
    from onnxforge.show import print_bench

    anchors = [name.strip() for name in args.anchors.split(",") if name.strip()] if args.anchors else []
    settings = BenchSettings(args.threads, args.repeats, args.new_tokens, args.batch)
    out = Path(args.out) if args.out else None
    report = run_bench([Path(d) for d in args.dirs], anchors, settings, out, args.command_line)
    print_bench(report)
    if args.json:
        print(json.dumps(report))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from onnxforge.demo import run_demo

    run_demo(args.prompt, args.max_new_tokens)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per stage."""
    from onnxforge.compress_cli import add_compress_parsers
    from onnxforge.exporter.defaults import DEFAULT_OPSET, DEFAULT_TOLERANCE

    parser = argparse.ArgumentParser(prog="onnxforge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser("export", help="export a model to an ONNX folder with KV cache")
    export.add_argument("source", metavar="SOURCE", help="smollm2-135m, a Hugging Face folder, a .gguf file or tiny:ARCH")
    export.add_argument("out", metavar="OUT", help="output folder (written all or nothing)")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    export.add_argument("--no-validate", action="store_true", help="skip the parity check against torch")
    export.set_defaults(run=_export)

    validate = commands.add_parser("validate", help="check an exported folder against its torch source")
    validate.add_argument("dir", metavar="DIR")
    validate.add_argument("--against", metavar="SOURCE", help="torch source (default: the one in onnxforge.json)")
    validate.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs logits difference")
    validate.set_defaults(run=_validate)

    _add_generate_parsers(commands)
    _add_eval_parser(commands)
    _add_bench_parser(commands)
    add_compress_parsers(commands)
    demo = commands.add_parser("demo", help="export the default model (cached) and answer a chat prompt")
    demo.add_argument("--prompt", default="What is the capital of France?")
    demo.add_argument("--max-new-tokens", type=int, default=64)
    demo.set_defaults(run=_demo)
    return parser


def _add_generate_parsers(commands: argparse._SubParsersAction) -> None:
    from onnxforge.generate_cli import add_runtime_arguments

    generate = commands.add_parser("generate", help="answer prompts with an exported folder (no torch needed)")
    add_runtime_arguments(generate, max_new_tokens=256)
    generate.add_argument("prompt", metavar="PROMPT", nargs="+", help="one or more prompts (several: one batch)")
    generate.add_argument("--raw", action="store_true", help="do not wrap the prompt in the chat template")
    generate.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    generate.add_argument("--truncate", action="store_true", help="keep the last tokens of a prompt too long to fit")
    generate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    generate.set_defaults(run=_generate)

    chat = commands.add_parser("chat", help="talk with an exported folder (streams; /reset, /exit)")
    add_runtime_arguments(chat, max_new_tokens=512)
    chat.set_defaults(run=_chat)


def _add_eval_parser(commands: argparse._SubParsersAction) -> None:
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
    evaluate.set_defaults(run=_eval)

    report = commands.add_parser("report", help="Markdown report with plots from bench and eval results")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(run=_report)


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="time folders and competing engines, each in its own process")
    bench.add_argument("dirs", metavar="DIR", nargs="+")
    bench.add_argument("--anchors", metavar="LIST", help="comma-separated: torch,optimum,genai,llamacpp")
    bench.add_argument("--out", metavar="RUN_DIR", help="write RUN_DIR/bench.json (for onnxforge report)")
    bench.add_argument("--threads", type=int, default=2, help="threads of every engine (default %(default)s)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default %(default)s)")
    bench.add_argument("--new-tokens", type=int, default=64, help="tokens per run (default %(default)s)")
    bench.add_argument("--batch", type=int, default=8, help="the larger batch for our runtime (default %(default)s)")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(run=_bench)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["onnxforge", *(sys.argv[1:] if argv is None else argv)])
    return _run_reporting_errors(args.run, args)


def _run_reporting_errors(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return run(args)
    except BadInput as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: nothing was written")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place that turns failures into an exit status
        if os.environ.get("ONNXFORGE_DEBUG"):
            raise
        console.print(f"[red]failed:[/red] {type(error).__name__}: {error} (set ONNXFORGE_DEBUG=1 for the traceback)",
                      soft_wrap=True)
        return EXIT_FAILED


class _ConsoleLogHandler(logging.Handler):
    """Our own log lines (such as a provider fallback) as one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[yellow]{record.levelname.lower()}:[/yellow] {record.getMessage()}", soft_wrap=True)


def _quiet_libraries() -> None:
    """Keep library chatter off stderr so that our own lines stand out; show ours through the console."""
    logger = logging.getLogger("onnxforge")
    if not any(isinstance(handler, _ConsoleLogHandler) for handler in logger.handlers):
        logger.addHandler(_ConsoleLogHandler())
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore")


if __name__ == "__main__":
    sys.exit(main())
