"""`onnxforge chat DIR`: an interactive conversation that streams each answer and keeps the history."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from onnxforge.cli.runtime_options import add_runtime_arguments, generator_from_args, settings_from_args
from onnxforge.errors import EXIT_OK
from onnxforge.progress import console
from onnxforge.runtime.generate import GenerationSettings, Generator, Message

HELP = "type a message; /reset forgets the conversation, /exit (or Ctrl-D) leaves, Ctrl-C stops an answer"


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The chat sub-command (the model and sampling flags of generate)."""
    chat = commands.add_parser("chat", help="talk with an exported folder (streams; /reset, /exit)")
    add_runtime_arguments(chat, max_new_tokens=512)
    chat.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Open the folder and talk until /exit or end of input."""
    chat_loop(generator_from_args(args), settings_from_args(args))
    return EXIT_OK


def chat_loop(
    generator: Generator,
    settings: GenerationSettings,
    read: Callable[[str], str] = input,
    write: Callable[[str], object] | None = None,
) -> list[Message]:
    """Read messages until /exit or end of input; returns the conversation as it stands."""
    write = write or _write_now
    console.print(f"[dim]{HELP}[/dim]")
    history: list[Message] = []
    while True:
        try:
            text = read("> ").strip()
        except EOFError:
            return history
        except KeyboardInterrupt:
            write("\n")
            continue
        if text == "/exit":
            return history
        if text == "/reset":
            history = []
            console.print("[dim]conversation cleared[/dim]")
        elif text:
            history = _answer(generator, settings, history + [{"role": "user", "content": text}], write)


def _answer(
    generator: Generator, settings: GenerationSettings, history: list[Message], write: Callable[[str], object]
) -> list[Message]:
    """Stream the answer to the last message; Ctrl-C keeps what was said so far."""
    history = _fitting(generator, settings, history)
    if not history:
        return []
    run = generator.run([generator.prompt_ids(history)], settings)
    try:
        for deltas in run:
            write(deltas[0])
    except KeyboardInterrupt:
        console.print("\n[yellow]answer stopped[/yellow]")
    write("\n")
    return history + [{"role": "assistant", "content": run.streams[0].text}]


def _fitting(generator: Generator, settings: GenerationSettings, history: list[Message]) -> list[Message]:
    """The most recent turns whose prompt leaves room for an answer; [] (with a note) when none does."""
    context = generator.decoder.context_length or 1 << 62
    while history and len(generator.prompt_ids(history)) + settings.max_new_tokens > context:
        history = history[2:] if len(history) > 2 else []
        if history:
            console.print("[dim]oldest turn dropped to fit the context[/dim]")
    if not history:
        console.print("[red]error:[/red] that message is too long for the model's context; try a shorter one")
    return history


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
