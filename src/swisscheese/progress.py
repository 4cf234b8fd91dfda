"""Rich progress bars for long work, behind the plain callbacks the library takes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bars(console: Console | None = None) -> Iterator[Progress]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    ) as p:
        yield p


class TaskBars:
    """Maps callback calls (phase, done, total, figures) onto one bar per phase."""

    def __init__(self, progress: Progress, prefix: str = "") -> None:
        self.progress = progress
        self.prefix = prefix
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int, figures: dict | None = None) -> None:
        key = phase if figures is not None else self.prefix or phase
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{self.prefix}{key}", total=total, info="")
        info = "  ".join(f"{k} {v:.3g}" for k, v in (figures or {}).items())
        if figures is None:
            info = phase
        self.progress.update(self.tasks[key], completed=done, total=total, info=info)
