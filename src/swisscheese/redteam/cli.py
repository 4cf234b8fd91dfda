"""`swisscheese redteam ...`: run campaigns (and, from the report module, render them).

`register(app)` adds the `redteam` group. Other modules add their own commands to
`redteam_app`: `swisscheese.redteam.report_cli` is imported when it exists and, if it
defines `register(redteam_app)`, called.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swisscheese.clierrors import fail as _fail

redteam_app = typer.Typer(help="Red-team targets: attacks, judges, campaigns, reports.",
                          no_args_is_help=True, pretty_exceptions_enable=False)




def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_summary(console: Console, summary: dict, details: dict) -> None:
    families = sorted({f for t in summary["targets"].values() for f in t["asr"]})
    table = Table(title="ASR per family (detail score >= the behaviour's threshold)")
    table.add_column("family")
    for name in summary["targets"]:
        table.add_column(escape(name), justify="right")
    for f in families:
        table.add_row(f, *[_fmt(t["asr"].get(f)) for t in summary["targets"].values()])
    table.add_row("[bold]all templates[/]", *[_fmt(d["asr_templated"])
                                              for d in details["targets"].values()])
    table.add_row("[bold]over-refusal[/]", *[_fmt(t["overrefusal"])
                                             for t in summary["targets"].values()])
    table.add_row("[bold]universal: levels passed[/]",
                  *[f"{t['universal']['levels_passed']}/8"
                    for t in summary["targets"].values()])
    table.add_row("[bold]errors[/]", *[str(d["errors"]) for d in details["targets"].values()])
    console.print(table)
    for name, t in summary["targets"].items():
        u = t["universal"]
        best = escape(u["template"]) if u["template"] else "none"
        console.print(f"{escape(name)}: strongest template {best} ({u['levels_passed']}/8 "
                      "levels)", highlight=False)


@redteam_app.command("run")
def run(
    out: Annotated[Path, typer.Option(help="Run directory: store.sqlite, summary.json, "
                                           "details.json, attempts.jsonl.")],
    config: Annotated[Path | None, typer.Option(help="Campaign config (YAML).")] = None,
    preset: Annotated[str | None, typer.Option(help="A ready-made campaign: 'organism'.")] = None,
    base: Annotated[str | None, typer.Option(
        help="Organism directory (helpful-only/, aligned/) for the built-in targets.")] = None,
    bundle: Annotated[str | None, typer.Option(help="Guard bundle directory.")] = None,
    exchange_bundle: Annotated[str | None, typer.Option(
        help="With --preset organism: a second bundle (the exchange classifier) that guards "
             "one more target, aligned+input+exchange, beside --bundle's.")] = None,
    reply_bundle: Annotated[str | None, typer.Option(
        help="With --preset organism: a second bundle with a reply-only output classifier "
             "that guards one more target, aligned+input+reply, beside --bundle's.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Worker threads.")] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Run the units on Ray actors (one copy of the targets each): a local "
                      "Ray instance, or the cluster at --ray-address.")] = False,
    ray_address: Annotated[str | None, typer.Option(
        envvar="RAY_ADDRESS", help="Ray cluster to use with --ray (HOST:PORT or "
                                   "ray://HOST:PORT); unset: a local instance.")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        help="Ray actors (default: one per CPU of the cluster).")] = None,
    store: Annotated[str | None, typer.Option(
        help="Store of the attempts: a SQLite file or a database URL "
             "(postgresql+psycopg://...); default: OUT/store.sqlite.")] = None,
) -> None:
    """Run a campaign (behaviours x attacks x targets); rerun the same command to resume."""
    from swisscheese.models.base import ModelError
    from swisscheese.progress import progress_bars
    from swisscheese.raycluster import RayUnavailable
    from swisscheese.redteam.behaviours import BehaviourError
    from swisscheese.redteam.campaign import Campaign, RayOptions
    from swisscheese.redteam.config import ConfigError, load_config
    from swisscheese.redteam.presets import get_preset
    from swisscheese.store.sqlite import StoreError

    console = Console()
    try:
        if (config is None) == (preset is None):
            raise ConfigError("give exactly one of --config or --preset")
        if config is not None:
            if exchange_bundle is not None or reply_bundle is not None:
                raise ConfigError("--exchange-bundle and --reply-bundle go with --preset; in "
                                  "a config, give the target its own `bundle`")
            cfg = load_config(config)
            cfg = replace(cfg, base=base or cfg.base, bundle=bundle or cfg.bundle)
        else:
            cfg = get_preset(preset or "", base=base, bundle=bundle,
                             exchange_bundle=exchange_bundle, reply_bundle=reply_bundle)
        if concurrency is not None:
            cfg = replace(cfg, concurrency=concurrency)
        campaign = Campaign(cfg, out, store=store)
        with progress_bars(console) as bars:
            task = bars.add_task(f"campaign {cfg.name}", total=None, info="")

            def progress(phase: str, done: int, total: int,
                         figures: Mapping[str, float] | None = None) -> None:
                bars.update(task, completed=done, total=total, info=phase)

            options = RayOptions(ray_address, ray_workers) if ray or ray_address else None
            result = campaign.run(progress, options)
    except (ConfigError, BehaviourError, StoreError, ModelError, FileNotFoundError,
            ValueError, RayUnavailable) as e:
        raise _fail(str(e)) from None
    except KeyError as e:
        raise _fail(str(e.args[0]) if e.args else str(e)) from None
    print_summary(console, result.summary, result.details)
    console.print(f"{result.attempts} attempts ({result.new} new, {result.errors} errors) in "
                  f"{result.seconds:.1f} s, {result.per_minute:.0f} attempts/min; wrote "
                  f"{escape(str(out))}/summary.json", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `redteam` group to the top-level app."""
    try:
        report_cli = importlib.import_module("swisscheese.redteam.report_cli")
    except ModuleNotFoundError as e:
        if e.name != "swisscheese.redteam.report_cli":
            raise
    else:
        hook = getattr(report_cli, "register", None)
        if hook is not None:
            hook(redteam_app)
    app.add_typer(redteam_app, name="redteam")
