"""`swisscheese redteam report RUN --html OUT [--json OUT]`, added to the `redteam` group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swisscheese.clierrors import fail as _fail


def report(
    run: Annotated[Path, typer.Argument(help="A red-team RUN directory (summary.json and "
                                             "attempts.jsonl), as `redteam run --out` writes.")],
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the report's data as JSON here.")] = None,
) -> None:
    """ASR heat map, layer by layer ASR, detail-score distributions, universal templates,
    errors and example transcripts of a red-team run."""
    from swisscheese.redteam.report import ReportError, write_report

    if html is None and json_out is None:
        raise _fail("give --html OUT, --json OUT or both")
    try:
        rep = write_report(run, html, json_out)
    except (ReportError, OSError) as e:
        raise _fail(str(e)) from None
    for name, t in rep["targets"].items():
        m = t["mean_asr"]
        typer.echo(f"{name}: mean ASR {'-' if m is None else f'{m:.3f}'}, "
                   f"universal levels passed {t['universal'].get('levels_passed', 0)}, "
                   f"errors {t['counts']['errors']}, undetermined {t['counts']['undetermined']}")
    for out in (html, json_out):
        if out is not None:
            typer.echo(f"wrote {out}")


def add_commands(redteam_app: typer.Typer) -> None:
    """Add `report` to the `redteam` command group."""
    redteam_app.command("report")(report)


# The redteam CLI looks for `register(redteam_app)`; `add_commands` is the same hook.
register = add_commands
