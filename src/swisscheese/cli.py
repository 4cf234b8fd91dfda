"""The `swisscheese` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from swisscheese import __version__
from swisscheese.clierrors import fail
from swisscheese.fileio import atomic_write_json

app = typer.Typer(help="Layered defences against jailbreaks, and the red team that tests them.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
organism_app = typer.Typer(help="Train and evaluate the model organism.", no_args_is_help=True)
world_app = typer.Typer(help="Look at the synthetic world.", no_args_is_help=True)
converters_app = typer.Typer(help="Augmentations: disguise a request.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")
app.add_typer(world_app, name="world")
app.add_typer(converters_app, name="converters")


def _register_subapps() -> None:
    from swisscheese.bundles.cli import classify
    from swisscheese.constitution.cli import constitution_app
    from swisscheese.data.cli import data_app
    from swisscheese.recipes.cli import classifier_app

    app.command("classify")(classify)
    app.add_typer(classifier_app, name="classifier",
                  help="Train and evaluate guard bundles (input and streaming output classifiers).")
    app.add_typer(data_app, name="data", help="Synthetic training data from a constitution.")

    app.add_typer(constitution_app, name="constitution",
                  help="Check and show constitutions of harmful and harmless categories.")

    # Each of these packages adds its own commands (see its cli.py).
    from swisscheese.interp import cli as interp_cli
    from swisscheese.rapid_response import cli as patch_cli
    from swisscheese.redteam import cli as redteam_cli
    from swisscheese.serve import cli as serve_cli
    from swisscheese.t2i import cli as t2i_cli
    from swisscheese.training import cli as training_cli

    for module in (patch_cli, serve_cli, redteam_cli, training_cli, interp_cli, t2i_cli):
        module.register(app)


_register_subapps()
console = Console()


class CliError(Exception):
    """An error the user can fix; printed as one line, exit code 1."""




def _expected_errors() -> tuple[type[BaseException], ...]:
    """The errors a user can fix: printed as one line, never as a traceback."""
    from swisscheese.models.base import ModelError
    from swisscheese.raycluster import RayUnavailable
    from swisscheese.store.engine import StoreError

    return (CliError, ModelError, FileNotFoundError, NotADirectoryError, KeyError, ValueError,
            RayUnavailable, StoreError)


def _message(e: BaseException) -> str:
    # KeyError's str() wraps the message in quotes; its first argument is the message.
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _run(fn):  # noqa: ANN001, ANN202 - thin wrapper for every command body
    """Turn the library's expected errors into one clear line and a non-zero exit."""
    try:
        return fn()
    except _expected_errors() as e:
        raise fail(_message(e)) from None


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@organism_app.command("train")
def organism_train(
    out: Annotated[Path, typer.Option(help="Directory for helpful-only/ and aligned/.")],
    preset: Annotated[str, typer.Option(help="Size and budget: 'test' or 'demo'.")] = "demo",
    seed: Annotated[int, typer.Option(help="World and training seed.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads (0: all cores).")] = 0,
) -> None:
    """Train helpful-only (pretraining) and aligned (safety SFT) on the world."""
    from swisscheese.organism.presets import get_preset
    from swisscheese.organism.train import train_organism
    from swisscheese.progress import TaskBars, progress_bars

    def body() -> None:
        p = get_preset(preset)
        with progress_bars(console) as bars:
            paths = train_organism(out, p, seed=seed, threads=threads or None,
                                   progress=TaskBars(bars))
        console.print(f"wrote {paths.helpful_only} and {paths.aligned}")

    _run(body)


def print_eval(result: dict, title: str) -> None:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("utility accuracy", f"{result['utility_accuracy']:.3f}")
    for k, v in result["refusal_rate"].items():
        t.add_row(f"refusal ({k})", f"{v:.3f}")
    t.add_row("over-refusal (look-alikes)", f"{result['overrefusal_rate']:.3f}")
    t.add_row("detail score (plain)", f"{result['detail_score']:.3f}")
    for fam, v in result["asr"].items():
        t.add_row(f"ASR {fam}", f"{v:.3f}")
    console.print(t)


@organism_app.command("eval")
def organism_eval(
    model: Annotated[str, typer.Option(help="HF model directory or OpenAI-compatible URL.")],
    json_out: Annotated[Path | None,
                        typer.Option("--json", help="Write the figures here.")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Helpful-only model whose answers the grader compares with. Default: the "
             "sibling helpful-only/ directory when there is one, else the ground truth.")] = None,
    seed: Annotated[int | None,
                    typer.Option(help="World seed (default: the model card's).")] = None,
    family: Annotated[list[str] | None, typer.Option(help="Only these families.")] = None,
) -> None:
    """Evaluate a model on the world and print a table."""

    def body() -> None:
        result = evaluate_dir(model, reference, seed, family)
        print_eval(result, f"evaluation of {model}")
        if json_out:
            atomic_write_json(json_out, result)
            console.print(f"wrote {json_out}")

    _run(body)


def evaluate_dir(model: str, reference: str | None = None, seed: int | None = None,
                 families: list[str] | None = None) -> dict:
    from swisscheese.models import load_model
    from swisscheese.organism.evaluate import evaluate, reference_answers
    from swisscheese.organism.train import read_card
    from swisscheese.progress import TaskBars, progress_bars
    from swisscheese.world import World

    is_url = model.startswith(("http://", "https://"))
    card = None if is_url else read_card(model)
    world = World(seed=seed if seed is not None else (card or {}).get("world_seed", 0))
    if reference is None and not is_url:
        sibling = Path(model).parent / "helpful-only"
        if sibling.is_dir() and sibling.resolve() != Path(model).resolve():
            reference = str(sibling)
    m = load_model(model)
    refs = None
    with progress_bars(console) as bars:
        if reference:
            t = bars.add_task("reference answers", total=None, info=reference)
            refs = reference_answers(load_model(reference), world)
            bars.update(t, total=1, completed=1)
        result = evaluate(m, world, refs, families, progress=TaskBars(bars, "evaluate "))
    result["model"] = model
    result["reference"] = reference or "ground truth"
    if card:
        result["card"] = {k: card[k] for k in ("variant", "preset", "world_seed", "training")
                          if k in card}
    return result


@world_app.command("show")
def world_show(seed: Annotated[int, typer.Option(help="World seed.")] = 0,
               hazard: Annotated[str | None, typer.Option(help="Show one hazard in full.")] = None
               ) -> None:
    """Summarise the world, or print one hazard's procedure."""
    from swisscheese.world import World

    def body() -> None:
        w = World(seed=seed)
        if hazard:
            h = w.hazard(hazard)
            console.print(f"[bold]{h.name}[/] ({h.category.id}, "
                          f"{'seen' if h.seen_in_safety else 'unseen'} in safety training)")
            console.print(h.procedure(), highlight=False)
            console.print("key details: " + ", ".join(h.key_details), highlight=False)
            return
        t = Table(title=f"world seed {seed} ({w.fingerprint()})")
        for col in ("category", "hazards", "unseen", "example"):
            t.add_column(col)
        for c in w.categories:
            hs = [h for h in w.hazards if h.category.id == c.id]
            t.add_row(c.id, str(len(hs)), str(sum(not h.seen_in_safety for h in hs)),
                      f"{hs[0].id}: {c.verb} the {hs[0].name}")
        console.print(t)

    _run(body)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where checkpoints, figures and report go.")] = Path(
        "runs/demo"),
    preset: Annotated[str, typer.Option(help="Organism preset.")] = "demo",
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    retrain: Annotated[bool, typer.Option(help="Train even when checkpoints are cached.")] = False,
) -> None:
    """Train (or reuse) the organism, evaluate it and write an HTML report."""
    from swisscheese.demo import run_demo

    def body() -> None:
        report = run_demo(out, preset=preset, seed=seed, retrain=retrain, console=console)
        console.print(f"[bold green]report:[/] {report}")

    _run(body)


@converters_app.command("list")
def converters_list() -> None:
    """List the registered converters."""
    from swisscheese.data.converters import CONVERTERS

    t = Table(title="converters")
    for col in ("name", "family", "invertible"):
        t.add_column(col)
    for name, cls in sorted(CONVERTERS.items()):
        t.add_row(name, cls.family, "yes" if cls.invertible else "no")
    console.print(t)


@converters_app.command("apply")
def converters_apply(
    names: Annotated[str, typer.Argument(help="Converter names joined by '+', applied in order.")],
    text: Annotated[str, typer.Argument(help="The text to convert.")],
    decode: Annotated[bool, typer.Option(help="Decode instead of encode.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for converters that choose.")] = 0,
) -> None:
    """Encode (or decode) TEXT with a stack of converters, e.g. `rot13+base64`."""
    from swisscheese.data.converters import stack

    def body() -> None:
        s = stack(names.split("+"), seed=seed)
        typer.echo(s.decode(text) if decode else s.encode(text))

    _run(body)


def main() -> None:
    """Entry point: sub-apps raise the library's errors; print them as one line, exit 1."""
    try:
        app()
    except _expected_errors() as e:
        fail(_message(e))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
