"""How every `swisscheese` command reports an error the user can fix: one red line on
stderr, exit code 1."""

from __future__ import annotations

import typer


def fail(message: str) -> typer.Exit:
    """Print `error: message` and return the Exit to raise."""
    from rich.console import Console

    # markup off: messages quote paths and file contents, which may hold [brackets].
    Console(stderr=True).print(f"error: {message}", style="bold red", markup=False,
                               highlight=False, soft_wrap=True)
    return typer.Exit(1)
