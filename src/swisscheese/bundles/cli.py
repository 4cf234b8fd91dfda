"""`swisscheese classify --bundle B --input FILE --output FILE`: score a file with a bundle.

`classify_app` is a Typer app with this one command; the main CLI registers the function
itself with `app.command("classify")(classify)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swisscheese.bundles.bundle import BundleError, load_bundle
from swisscheese.bundles.classify import ClassifyError, classify_file
from swisscheese.clierrors import fail as _fail

classify_app = typer.Typer(help="Score prompts and responses with a guard bundle.",
                           no_args_is_help=True, pretty_exceptions_enable=False)




def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


@classify_app.command("classify")
def classify(
    bundle: Annotated[Path, typer.Option(help="Guard bundle directory.")],
    input: Annotated[Path, typer.Option(
        help="JSONL (.jsonl, .json-lines) with 'prompt' and optional 'response' fields, or "
             "CSV (.csv) with those columns.")],
    output: Annotated[Path, typer.Option(
        help="Where to write the rows with input_score, output_score and flagged added; "
             "same format as INPUT.")],
    ray: Annotated[bool, typer.Option(
        "--ray", help="Score batches on Ray actors, one bundle each: a local instance, or "
                      "--ray-address.")] = False,
    ray_address: Annotated[str | None, typer.Option(
        envvar="RAY_ADDRESS", help="Ray cluster for --ray (HOST:PORT or ray://HOST:PORT); "
                                   "unset: a local instance.")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        help="Ray actors (default: one per CPU of the cluster).")] = None,
) -> None:
    """Score every prompt (and response) of a file and flag those over the thresholds."""
    from swisscheese.raycluster import RayUnavailable

    try:
        b = load_bundle(bundle)
        use_ray = ray or ray_address is not None
        summary = classify_file(bundle if use_ray else b, input, output, ray=use_ray,
                                ray_address=ray_address, ray_workers=ray_workers)
    except (BundleError, ClassifyError, RayUnavailable) as e:
        raise _fail(str(e)) from None

    out = Console()
    t = Table(title=f"{escape(input.name)}: guard bundle v{b.version}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    share = f" ({summary.flagged / summary.rows:.1%})" if summary.rows else ""
    t.add_row("rows", str(summary.rows))
    t.add_row("flagged", f"{summary.flagged}{share}")
    t.add_row("  by input classifier", str(summary.input_flagged))
    t.add_row("  by output classifier", str(summary.output_flagged))
    t.add_row("responses scored", str(summary.responses))
    t.add_row("mean input score", _fmt(summary.mean_input_score))
    t.add_row("mean output score", _fmt(summary.mean_output_score))
    t.add_row("thresholds (input / output)",
              f"{b.thresholds['input']:.4f} / {b.thresholds['output']:.4f}")
    out.print(t)
    out.print(f"wrote {escape(str(output))}", highlight=False, soft_wrap=True)
