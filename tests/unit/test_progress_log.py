"""TaskBars writes plain progress lines where the console is not a terminal (logs, CI)."""

from __future__ import annotations

import io

from rich.console import Console

from swisscheese.progress import TaskBars, progress_bars


def lines_of(calls: list[tuple[str, int, int]], clock: list[float]) -> list[str]:
    buf = io.StringIO()
    ticks = iter(clock)
    with progress_bars(Console(file=buf, force_terminal=False, width=120)) as p:
        bars = TaskBars(p, clock=lambda: next(ticks))
        for phase, done, total in calls:
            bars(phase, done, total)
    return [ln.split("] ", 1)[1] for ln in buf.getvalue().splitlines() if ln.startswith("[")]


def test_logs_start_end_and_every_interval_not_every_call() -> None:
    calls = [("fit", i, 100) for i in range(0, 101, 10)]
    clock = [0.0, 1.0, 2.0, 11.0, 12.0, 13.0, 14.0, 15.0, 30.0, 31.0, 32.0]
    assert lines_of(calls, clock) == ["fit: 0/100", "fit: 30/100", "fit: 80/100",
                                      "fit: 100/100"]


def test_a_phase_that_runs_again_is_logged_again() -> None:
    calls = [("read", 0, 2), ("read", 2, 2), ("read", 2, 2), ("read", 0, 5), ("read", 5, 5)]
    assert lines_of(calls, [0.0, 1.0, 2.0, 3.0, 4.0]) == [
        "read: 0/2", "read: 2/2", "read: 0/5", "read: 5/5"]


def test_a_terminal_gets_bars_only() -> None:
    buf = io.StringIO()
    with progress_bars(Console(file=buf, force_terminal=True, width=120)) as p:
        TaskBars(p)("fit", 1, 2)
    assert "fit: 1/2" not in buf.getvalue()
