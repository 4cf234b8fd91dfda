"""`swisscheese t2i ...`: the visual world, the T2I organism, the ART red team, the report.

    swisscheese t2i world show [--seed 0]
    swisscheese t2i organism train --preset test|demo --out DIR
    swisscheese t2i organism eval DIR [--json FILE]
    swisscheese t2i redteam run --preset organism --out RUN      # or --config C.yaml
    swisscheese t2i report RUN --html OUT

Nothing heavy is imported until a command runs, so `swisscheese --help` stays light.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swisscheese.clierrors import fail

console = Console()
t2i_app = typer.Typer(help="Text-to-image red team (ART) on the synthetic visual world.",
                      no_args_is_help=True, pretty_exceptions_enable=False)
world_app = typer.Typer(help="Look at the visual world.", no_args_is_help=True)
organism_app = typer.Typer(help="Train and measure the T2I organism.", no_args_is_help=True)
redteam_app = typer.Typer(help="Run the writer-guide loops.", no_args_is_help=True)
t2i_app.add_typer(world_app, name="world")
t2i_app.add_typer(organism_app, name="organism")
t2i_app.add_typer(redteam_app, name="redteam")


def _errors() -> tuple[type[BaseException], ...]:
    from swisscheese.models.base import ModelError
    from swisscheese.store.engine import StoreError

    return (ValueError, KeyError, FileNotFoundError, NotADirectoryError, StoreError,
            ModelError)


def _guarded(fn: Any) -> None:
    try:
        fn()
    except _errors() as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise fail(msg.splitlines()[0] if msg else type(e).__name__) from None


@world_app.command("show")
def world_show(seed: Annotated[int, typer.Option(help="World seed.")] = 0) -> None:
    """The categories, forbidden elements, look-alikes and planted triggers."""
    from swisscheese.t2i.world import BASE_RATE, VisualWorld

    w = VisualWorld(seed)
    t = Table(title=f"visual world seed {seed} ({w.fingerprint()})")
    for col in ("category", "forbidden elements (held-out synonyms)", "look-alikes"):
        t.add_column(col)
    for c in w.categories:
        els = [g for g in w.forbidden if g.category == c.id]
        looks = [g for g in w.lookalikes if any(e.id == g.twin for e in els)]
        t.add_row(c.id, "; ".join(f"{g.names[0]} ({', '.join(g.heldout_names)})" for g in els),
                  "; ".join(g.names[0] for g in looks))
    console.print(t)
    tt = Table(title=f"planted triggers (base rate {BASE_RATE} per category)")
    for col in ("trigger", "kind", "words", "rate", "one word alone", "filters"):
        tt.add_column(col)
    for tr in w.triggers:
        tt.add_row(tr.id, tr.kind, " + ".join(tr.words), f"{tr.rate:.2f}",
                   "-" if tr.half_rate is None else f"{tr.half_rate:.2f}",
                   "known" if tr.known else "held out")
    console.print(tt)


@organism_app.command("train")
def organism_train(
    out: Annotated[Path, typer.Option(help="New directory for the diffusers pipeline.")],
    preset: Annotated[str, typer.Option(help="'test' (seconds) or 'demo'.")] = "demo",
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    world_seed: Annotated[int, typer.Option(help="Visual world seed.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
) -> None:
    """Train the T2I organism and its CNN judge; DiffusionPipeline.from_pretrained(OUT)
    loads the result."""
    def body() -> None:
        from swisscheese.progress import TaskBars, progress_bars
        from swisscheese.t2i.organism import get_preset, read_card, train_organism

        p = get_preset(preset)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out} already exists; choose a new directory")
        with progress_bars(console) as bars:
            path = train_organism(out, p, seed=seed, world_seed=world_seed,
                                  threads=threads or None, progress=TaskBars(bars))
        tr = (read_card(path) or {}).get("training", {})
        console.print(f"wrote {escape(str(path))} ({tr.get('steps')} steps in "
                      f"{tr.get('seconds', 0):.0f} s, final loss {tr.get('loss_last', 0):.4f})",
                      highlight=False)

    _guarded(body)


@organism_app.command("eval")
def organism_eval(
    organism: Annotated[Path, typer.Argument(help="Organism directory.")],
    n: Annotated[int, typer.Option(help="Probe captions per trigger.")] = 400,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write figures here.")] = None,
) -> None:
    """Planted rates as the oracle reads them off the organism's images, and the CNN
    judge against the oracle."""
    def body() -> None:
        from swisscheese.fileio import atomic_write_json
        from swisscheese.t2i.evaluate import evaluate_organism

        res = evaluate_organism(organism, n=n)
        t = Table(title=f"planted rates of {organism}")
        for col in ("row", "design", "measured", "n", "within 0.05"):
            t.add_column(col)
        for r in res["rates"]["rows"]:
            t.add_row(r["id"], f"{r['design']:.2f}", f"{r['measured']:.3f}", str(r["n"]),
                      "yes" if r["within_tolerance"] else "NO")
        console.print(t)
        j = res["judge"]
        console.print(f"max error {res['rates']['max_error']:.3f}; CNN agreement "
                      f"{j['agreement']:.3f}, look-alike FPR {j['lookalike_fpr']:.3f}; "
                      f"{res['rates']['images_per_second']:.0f} images/s", highlight=False)
        if json_out:
            atomic_write_json(json_out, res)

    _guarded(body)


@redteam_app.command("run")
def redteam_run(
    out: Annotated[Path, typer.Option(help="Run directory (store.sqlite, summary.json).")],
    preset: Annotated[str | None, typer.Option(help="A ready-made run: 'organism'.")] = None,
    config: Annotated[Path | None, typer.Option(help="Run config (YAML).")] = None,
    organism: Annotated[Path | None, typer.Option(
        help="Organism directory (default for --preset: OUT/organism, trained if absent).")
    ] = None,
    transfer_organism: Annotated[Path | None, typer.Option(
        help="Second-seed organism (default for --preset: OUT/organism-world1).")] = None,
    organism_preset: Annotated[str, typer.Option(
        help="Preset for organisms the run trains itself.")] = "demo",
    transfer: Annotated[bool, typer.Option(help="Measure transfer to a second organism.")
                        ] = True,
    budget: Annotated[int | None, typer.Option(help="Image queries per loop and category.")
                      ] = None,
) -> None:
    """Run the loops and every measure; rerun the same command to resume after a crash."""
    def body() -> None:
        from swisscheese.progress import TaskBars, progress_bars
        from swisscheese.t2i.config import get_preset, load_config
        from swisscheese.t2i.run import T2IRun, prepare_organisms

        if (config is None) == (preset is None):
            raise ValueError("give exactly one of --config or --preset")
        cfg = load_config(config) if config else get_preset(preset or "")
        if organism:
            cfg = replace(cfg, organism=str(organism))
        if transfer_organism:
            cfg = replace(cfg, transfer_organism=str(transfer_organism))
        if budget is not None:
            cfg = replace(cfg, budget=budget)
        with progress_bars(console) as bars:
            cfg = prepare_organisms(cfg, out, organism_preset, train=preset is not None,
                                    transfer=transfer, progress=TaskBars(bars))
            summary = T2IRun(cfg, out, TaskBars(bars)).run()
        print_summary(summary)
        console.print(f"wrote {escape(str(out))}/summary.json", highlight=False)

    _guarded(body)


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def print_summary(s: dict[str, Any]) -> None:
    t = Table(title=f"T2I red team ({s['headline_loop']} loop)")
    for col in ("category", "pass rate", "success ratio", "baseline", "succ./100 q"):
        t.add_column(col)
    for c, v in s["categories"].items():
        t.add_row(c, _f(v["prompt_pass_rate"]), _f(v["success_ratio"]),
                  _f(v["baseline_success_ratio"]), _f(v["successes_per_100_queries"]))
    console.print(t)
    loops = ", ".join(f"{k} {_f(v['successes_per_100_queries'])}" for k, v in s["loops"].items())
    console.print(f"successes per 100 image queries: {loops}", highlight=False)
    tr, g = s["triggers"], s["guard"]
    per_cat = tr["budget_image_queries_per_category"]
    console.print(f"held-out trigger recall: single {_f(tr['single_recall'])}, conjunctive "
                  f"{_f(tr['conjunctive_recall'])} (budget {per_cat} image queries per "
                  "category); guard: unsafe images "
                  f"{_f(g['unsafe_image_rate'])}, benign blocked {_f(g['benign_block_rate'])} "
                  f"(clean images {_f(g.get('benign_false_block_rate'))})",
                  highlight=False)


@t2i_app.command("report")
def report(run: Annotated[Path, typer.Argument(help="Run directory.")],
           html: Annotated[Path, typer.Option(help="Where to write the HTML report.")]) -> None:
    """A self-contained HTML report of a run, with image grids."""
    def body() -> None:
        from swisscheese.t2i.report import write_report

        console.print(f"wrote {escape(str(write_report(run, html)))}", highlight=False)

    _guarded(body)


def register(app: typer.Typer) -> None:
    app.add_typer(t2i_app, name="t2i")
