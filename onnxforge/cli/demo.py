"""`onnxforge demo`: export the default model once (cached), then answer a chat prompt through ONNX Runtime."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from onnxforge import __version__
from onnxforge.cache import cache_dir
from onnxforge.cli.output import show
from onnxforge.errors import EXIT_OK, OnnxforgeError
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
        with steps.step("export", f"export {DEFAULT_MODEL} to {folder} (once; later runs reuse it)"):
            export_in_child(DEFAULT_MODEL, folder)
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


class ExportFailed(OnnxforgeError):
    """The child process that exported the model failed; it has printed why."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the export failed (exit {status}): see its message above")
        self.exit_status = status


def export_in_child(source: str, folder: Path) -> None:
    """`onnxforge export SOURCE FOLDER --force` in a child process: torch, its thread pool and its memory end with
    that process, so the answer that follows is timed as a later session would see it."""
    command = [sys.executable, "-m", "onnxforge.cli", "export", source, str(folder), "--force"]
    status = subprocess.run(command, check=False).returncode
    if status != 0:
        raise ExportFailed(status)


def _usable_export(folder: Path) -> bool:
    manifest = read_manifest(folder)
    return manifest.get("onnxforge_version") == __version__ and manifest.get("parity", {}).get("passed", False)
