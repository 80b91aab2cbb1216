"""`onnxforge demo`: export the default model once (cached), then answer a chat prompt through ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge import __version__
from onnxforge.cache import cache_dir
from onnxforge.cli.output import show
from onnxforge.errors import EXIT_OK
from onnxforge.folder import read_manifest
from onnxforge.progress import Steps, console
from onnxforge.runtime.generate import GenerationSettings, Generator


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The demo sub-command."""
    demo = commands.add_parser("demo", help="export the default model (cached) and answer a chat prompt")
    demo.add_argument("--prompt", default="What is the capital of France?")
    demo.add_argument("--max-new-tokens", type=int, default=64)
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export or reuse the default model, then answer the prompt."""
    run_demo(args.prompt, args.max_new_tokens)
    return EXIT_OK


def run_demo(prompt: str, max_new_tokens: int) -> str:
    """Export (or reuse) the default model, answer `prompt` greedily, print each step's time."""
    from onnxforge.models import DEFAULT_MODEL

    folder = cache_dir() / DEFAULT_MODEL
    steps = Steps()
    if _usable_export(folder):
        console.print(f"reusing the export in {folder} (delete it to export again)")
    else:
        from onnxforge.exporter.export import export_model

        with steps.step("export", f"export {DEFAULT_MODEL} to {folder} (once; later runs reuse it)"):
            export_model(DEFAULT_MODEL, folder, force=True)
    with steps.step("session", "open an ONNX Runtime session"):
        generator = Generator(folder)
    run = generator.generate([prompt], GenerationSettings(max_new_tokens=max_new_tokens))
    answer, stats = run.completions[0].text.strip(), run.stats
    console.print(f"[bold]prompt:[/bold] {prompt}")
    console.print(f"[bold]answer:[/bold] {answer}")
    console.print(f"first token after {stats.prefill_s * 1000:.0f} ms, then {stats.decode_tokens_per_s:.1f} tokens/s "
                  f"(greedy, {generator.decoder.provider})")
    show(answer)
    return answer


def _usable_export(folder: Path) -> bool:
    manifest = read_manifest(folder)
    return manifest.get("onnxforge_version") == __version__ and manifest.get("parity", {}).get("passed", False)
