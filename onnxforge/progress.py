"""Step-by-step progress on stderr: a spinner while a step runs, its time when it ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, highlight=False)


class Steps:
    """Run named steps, show each with a spinner, and remember how long each took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        """Time the block under `name`, showing `label` while it runs."""
        start = time.perf_counter()
        with console.status(label):
            yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        console.print(f"[green]✓[/green] {label} [dim]({self.seconds[name]:.1f} s)[/dim]")
