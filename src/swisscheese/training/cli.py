"""CLI commands of this package, added to the `swisscheese` app by `register`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands and command groups to the top-level app."""
