"""A progress bar for training: steps, the last loss, tokens/s and the time left."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from onnxforge.progress import console


class TrainingBar:
    """`with TrainingBar(total, done, tokens_per_step) as bar: bar.update(record)` for each step's figures."""

    def __init__(self, total: int, done: int, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
            TimeRemainingColumn(), console=console, transient=False)
        self.task = self.progress.add_task("train", total=total, completed=done, stage="train", loss="-", speed="-")
        self._first: tuple[int, float] | None = None

    def __enter__(self) -> TrainingBar:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def update(self, record: dict[str, Any]) -> None:
        """Advance by one step and show its stage, loss and the tokens/s since the bar started."""
        steps = self.progress.tasks[0].completed + 1
        if self._first is None:
            self._first = (steps - 1, record["seconds"])
            speed = "-"
        else:
            first_steps, first_seconds = self._first
            elapsed = max(record["seconds"] - first_seconds, 1e-9)
            speed = f"{(steps - first_steps - 1) * self.tokens_per_step / elapsed:.0f}"
        self.progress.update(self.task, advance=1, stage=record["stage"], loss=f"{record['loss']:.4f}", speed=speed)
