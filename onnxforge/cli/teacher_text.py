"""`onnxforge teacher-text TEACHER_DIR OUT`: training text sampled from the teacher, continuing calibration passages."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from onnxforge.errors import EXIT_OK
from onnxforge.progress import console
from onnxforge.train.teacher_text import TeacherTextSettings, write_teacher_text

DEFAULTS = TeacherTextSettings()


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The teacher-text sub-command."""
    command = commands.add_parser("teacher-text", help="write training text sampled from an exported teacher "
                                  "(continuations of the calibration passages, with provenance and checksum)")
    command.add_argument("teacher", metavar="TEACHER_DIR", help="the teacher's exported folder (fp32 or fused)")
    command.add_argument("out", metavar="OUT", help="output folder: continuations.jsonl and provenance.json")
    command.add_argument("--passages", type=int, default=DEFAULTS.passages,
                         help="calibration passages to continue, in file order (default %(default)s)")
    command.add_argument("--prompt-tokens", type=int, default=DEFAULTS.prompt_tokens,
                         help="opening tokens of each passage given to the teacher (default %(default)s)")
    command.add_argument("--new-tokens", type=int, default=DEFAULTS.new_tokens,
                         help="tokens sampled per passage (default %(default)s)")
    command.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                         help="sampling temperature (default %(default)s)")
    command.add_argument("--top-p", type=float, default=DEFAULTS.top_p, help="nucleus sampling (default %(default)s)")
    command.add_argument("--seed", type=int, default=DEFAULTS.seed, help="sampler seed (default %(default)s)")
    command.add_argument("--batch", type=int, default=DEFAULTS.batch, help="passages per batch (default %(default)s)")
    command.add_argument("--force", action="store_true", help="replace OUT if it exists")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Sample the continuations with a progress bar; print what was written."""
    settings = TeacherTextSettings(args.passages, args.prompt_tokens, args.new_tokens, args.temperature,
                                   args.top_p, args.seed, args.batch)
    bar = Progress(TextColumn("[bold]teacher text"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console)
    with bar:
        task = bar.add_task("passages", total=settings.passages)
        provenance = write_teacher_text(Path(args.teacher), Path(args.out), settings, args.force,
                                        lambda done, _total: bar.update(task, completed=done))
    print(f"wrote {provenance['rows']} continuations ({provenance['new_tokens']} new tokens) to {args.out}; "
          f"sha256 {provenance['sha256']}")
    return EXIT_OK
