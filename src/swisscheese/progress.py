"""How long work reports progress: one `Progress` callback type for the whole library, and
Rich progress bars behind it for the CLI.

A library function that takes a while accepts `progress: Progress | None` and calls
`progress(phase, done, total)` (with `figures`, a few named numbers such as the loss, when
it has them); `step(progress, ...)` does nothing when no callback was given. The CLI passes
`TaskBars(bars)`, which draws one bar per phase. Rich is imported only by the CLI side.
Where the console is not a terminal (a log file, CI), Rich draws nothing until the end, so
`TaskBars` also prints a plain line when a phase starts, every `LOG_EVERY_S` seconds while
it runs, and when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress

LOG_EVERY_S = 10.0


class Progress(Protocol):
    """progress(phase, done, total, figures=None): `done` of `total` units of `phase`."""

    def __call__(self, phase: str, done: int, total: int,
                 figures: Mapping[str, float] | None = None) -> None: ...


def step(progress: Progress | None, phase: str, done: int, total: int,
         figures: Mapping[str, float] | None = None) -> None:
    """Report to `progress` if there is one."""
    if progress is not None:
        if figures is None:
            progress(phase, done, total)
        else:
            progress(phase, done, total, figures)


@contextmanager
def progress_bars(console: Console | None = None) -> Iterator[RichProgress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    with RichProgress(
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
    """A `Progress` that draws one bar per phase (or one bar, with `prefix`) with Rich."""

    def __init__(self, progress: RichProgress, prefix: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.progress = progress
        self.clock = clock
        self.prefix = prefix
        self.tasks: dict[str, Any] = {}
        self.logged: dict[str, float] = {}  # phase -> when its last plain line was printed

    def __call__(self, phase: str, done: int, total: int,
                 figures: Mapping[str, float] | None = None) -> None:
        key = phase if figures is not None else self.prefix or phase
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{self.prefix}{key}", total=total, info="")
        info = "  ".join(f"{k} {v:.3g}" for k, v in (figures or {}).items())
        if figures is None:
            info = phase
        self.progress.update(self.tasks[key], completed=done, total=total, info=info)
        if not self.progress.console.is_terminal:
            self._log(f"{self.prefix}{key}", done, total, info)

    def _log(self, key: str, done: int, total: int, info: str) -> None:
        """A plain line for a log: at a phase's start and end, and every LOG_EVERY_S."""
        now, last = self.clock(), self.logged.get(key)
        ended = last == float("inf")  # a phase can run again (the probe reads texts often)
        if done >= total and ended:
            return
        if done < total and last is not None and not ended and now - last < LOG_EVERY_S:
            return
        self.logged[key] = float("inf") if done >= total else now
        extra = f"  {info}" if info and info != key else ""
        self.progress.console.print(f"[{time.strftime('%H:%M:%S')}] {key}: {done}/{total}{extra}",
                                    markup=False, highlight=False)
