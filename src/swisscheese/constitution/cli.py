"""`swisscheese constitution ...`: check a constitution file, print one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from swisscheese.constitution.loader import (
    ConstitutionError,
    default_constitution_text,
    load_constitution,
)
from swisscheese.constitution.schema import Constitution

constitution_app = typer.Typer(help="Check and print constitutions: the harmful and harmless "
                                    "categories the classifiers are trained from.",
                               no_args_is_help=True, pretty_exceptions_enable=False)


def _report(error: ConstitutionError) -> typer.Exit:
    """Print every problem as its own red `file:line: problem` line on stderr."""
    err = Console(stderr=True)
    for problem in error.problems:
        # markup off: messages quote user text, which may hold [brackets].
        err.print(str(problem), style="red", markup=False, highlight=False, soft_wrap=True)
    n = len(error.problems)
    err.print(f"{n} problem{'s' if n != 1 else ''}", style="bold red", highlight=False)
    return typer.Exit(1)


def _print_summary(c: Constitution, source: str) -> None:
    # Plain soft-wrapped lines rather than a table: a table folds the hash on a narrow
    # terminal, and the hash is what people copy.
    out = Console()
    out.print(f"[bold green]ok[/] {escape(source)}", highlight=False, soft_wrap=True)
    rows = [("name", c.name), ("version", c.version), ("hash", c.content_hash())]
    for section, cats in (("harmful", c.harmful), ("harmless", c.harmless)):
        n_examples = sum(len(cat.examples) for cat in cats)
        rows.append((section, f"{len(cats)} categories, {n_examples} examples"))
    for field, value in rows:
        out.print(f"  [bold]{field:<9}[/] {escape(value)}", highlight=False, soft_wrap=True)


@constitution_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="Constitution YAML file to validate.")],
) -> None:
    """Validate a constitution file: a summary, or every problem with its line number."""
    try:
        c = load_constitution(file)
    except ConstitutionError as e:
        raise _report(e) from None
    _print_summary(c, str(file))


@constitution_app.command("show")
def show(
    path: Annotated[Path | None, typer.Option(
        "--path", help="Print this file in normalised form instead of the default.")] = None,
) -> None:
    """Print the default constitution's YAML, or a file's in normalised form."""
    if path is None:
        typer.echo(default_constitution_text(), nl=False)
        return
    try:
        c = load_constitution(path)
    except ConstitutionError as e:
        raise _report(e) from None
    typer.echo(c.to_yaml(), nl=False)
