"""`swisscheese classifier train|eval|calibrate`: train a guard bundle by a recipe, measure
it, and recalibrate its thresholds on benign traffic.

`classifier_app` is a Typer app; the main CLI registers it as `swisscheese classifier`.
Train and eval ask the recipe registry (`--preset NAME` for train, the bundle's training
record for eval) and draw the tables the recipe returns. Errors the user can fix are
raised as ValueError or KeyError with a one-line message (a bad bundle raises BundleError,
a ValueError); the main `swisscheese` command prints them as one red line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swisscheese.recipes.base import Recipe, check_inputs, fmt
from swisscheese.recipes.base import Table as RecipeTable
from swisscheese.recipes.registry import RECIPES, get_recipe

classifier_app = typer.Typer(help="Train guard bundles and evaluate them against targets.",
                             no_args_is_help=True, pretty_exceptions_enable=False)
# Held out by default when --heldout is not given (the organism's and realworld's own).
DEFAULT_HELDOUT_HELP = "morse, homoglyphs, codeword"


def draw(tables: Sequence[RecipeTable], console: Console) -> None:
    """Render a recipe's tables and their notes."""
    for rt in tables:
        t = Table(title=escape(rt.title))
        for i, col in enumerate(rt.columns):
            t.add_column(col, justify="left" if i == 0 else "right")
        for row in rt.rows:
            t.add_row(*(escape(c) for c in row))
        console.print(t)
        for note in rt.notes:
            console.print(escape(note), highlight=False, soft_wrap=True)


def split_options(recipe: Recipe, given: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the recipe's settings from the options that are its config fields, the other
    options as its data inputs); options the recipe does not take are refused first."""
    check_inputs(recipe, given)
    fields = {f.name for f in dataclasses.fields(recipe.config_class)}
    overrides = {k: v for k, v in given.items() if v is not None and k in fields}
    inputs = {k: v for k, v in given.items() if v is not None and k not in fields}
    return recipe.settings(**overrides), inputs


def params_option(given: list[str] | None, option: str) -> dict[str, Any] | None:
    """Repeatable KEY=VALUE options as constructor kwargs (VALUE read as JSON where it
    parses, else as a string): `--input-param stage2=transformer --input-param
    'stage2_params={"epochs": 6}'`. None when none is given."""
    if not given:
        return None
    out: dict[str, Any] = {}
    for item in given:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE with KEY a name, e.g. "
                             f"{option} stage2=transformer")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def families_option(given: list[str] | None) -> tuple[str, ...] | None:
    """A repeatable family option as the recipe reads it: None when not given (the
    recipe's defaults, or with --data the data's own held-out families); 'none' drops out,
    so `--heldout none` alone holds out nothing."""
    return None if not given else tuple(h for h in given if h != "none")


@classifier_app.command("train")
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory: data/ and bundle/ go "
                                                     "inside it.")],
    preset: Annotated[str, typer.Option(
        help=f"Recipe to train with: {' or '.join(RECIPES.names())}.")] = "organism",
    constitution: Annotated[Path | None, typer.Option(
        "--constitution", help="Constitution YAML file (default: the world's default).")
    ] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Use this dataset (from `swisscheese data generate`) instead of "
                       "generating one.")] = None,
    target_fpr: Annotated[float, typer.Option(
        "--target-fpr", help="False-positive rate on harmless val traffic that the "
                             "thresholds are calibrated to.")] = 0.005,
    heldout: Annotated[list[str] | None, typer.Option(
        "--heldout", help="Converter or world family held out of training, for test only "
                          f"(repeatable; default: {DEFAULT_HELDOUT_HELP}; 'none' holds "
                          "out nothing).")] = None,
    responder: Annotated[str | None, typer.Option(
        "--responder", help="Model directory or OpenAI-compatible URL whose replies train "
                            "the output classifier (default: the world's answers).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of data, augmentation and training.")] = 0,
    n_per_category: Annotated[int | None, typer.Option(
        "--n-per-category", help="Records generated per constitution category "
                                 "(default 400).")] = None,
    augment: Annotated[int | None, typer.Option(
        help="Disguised copies of each plain training prompt (0: none; default 8).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace OUT/data and OUT/bundle if they exist.")] = False,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="Input classifier backend (decoding, ngram, transformer, probe, "
                          "...; organism default decoding: the n-gram after undoing "
                          "Morse, base64, spacing, Caesar, reversal and code words); the output "
                          "is its streaming twin (decoding-stream).")] = None,
    output_backend: Annotated[str | None, typer.Option(
        "--output-backend", help="Streaming backend of the output classifier (e.g. "
                                 "ngram-stream); needed for a backend without a streaming "
                                 "twin (hf-finetune).")] = None,
    model_dir: Annotated[Path | None, typer.Option(
        "--model-dir", "--probe-model",
        help="Local Hugging Face model directory for a backend that reads a model: the "
             "probe reads its hidden states (the served model), hf-finetune fine-tunes "
             "it.")] = None,
    datasets: Annotated[Path | None, typer.Option(
        "--datasets", help="Public datasets directory for --preset realworld (default: "
                           "../shared/datasets next to the repository).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", help="--preset realworld: at most this many rows per source (quick runs).")
    ] = None,
    output_context: Annotated[str | None, typer.Option(
        "--output-context", help="What the output classifier reads: 'exchange' (each reply "
                                 "delta in the context of the whole conversation; the "
                                 "organism's default) or 'reply' (the reply alone).")] = None,
    input_heldout: Annotated[list[str] | None, typer.Option(
        "--input-heldout", help="World family the input classifier never trains on while the "
                                "output classifier does (repeatable; default: split_intent, "
                                "indirect; 'none' for none).")] = None,
    input_param: Annotated[list[str] | None, typer.Option(
        "--input-param", help="KEY=VALUE constructor option of the input classifier "
                              "(repeatable; VALUE as JSON where it parses), e.g. "
                              "--backend cascade --input-param stage2=transformer.")] = None,
    output_param: Annotated[list[str] | None, typer.Option(
        "--output-param", help="KEY=VALUE constructor option of the output classifier "
                               "(repeatable), e.g. --output-backend cascade-stream "
                               "--output-param stage2=transformer-stream.")] = None,
) -> None:
    """Train input and output classifiers and write a calibrated guard bundle."""
    recipe = get_recipe(preset)
    settings, inputs = split_options(recipe, {
        "constitution": constitution, "data": data, "responder": responder,
        "n_per_category": n_per_category, "augment": augment, "backend": backend,
        "output_backend": output_backend,
        "model_dir": None if model_dir is None else str(model_dir),
        "datasets": datasets, "limit": limit, "output_context": output_context,
        # No --heldout: the defaults (or, with --data, the data's own held-out families).
        "input_heldout": families_option(input_heldout), "heldout": families_option(heldout),
        "input_params": params_option(input_param, "--input-param"),
        "output_params": params_option(output_param, "--output-param")})
    run_training(recipe, out, settings, inputs, target_fpr=target_fpr, seed=seed,
                 overwrite=force)


def run_training(recipe: Recipe, out: Path, settings: Any, inputs: dict[str, Any], *,
                 target_fpr: float, seed: int, overwrite: bool) -> None:
    """Check the options, then train with progress bars and draw the recipe's tables."""
    from swisscheese.bundles import load_bundle
    from swisscheese.progress import TaskBars, progress_bars

    # Everything cheap to check is checked before a model is loaded or data generated.
    recipe.check(settings, inputs)
    if "responder" in inputs:
        from swisscheese.models import load_model

        inputs["responder"] = load_model(inputs["responder"])
    console = Console()
    with progress_bars(console) as bars:
        path = recipe.train(out, settings, target_fpr=target_fpr, seed=seed,
                            progress=TaskBars(bars), overwrite=overwrite, **inputs)
    draw(recipe.trained_tables(load_bundle(path), path), console)


def print_eval(result: dict[str, Any], recipe: Recipe, console: Console) -> None:
    """The evaluation as the recipe's tables, then the targets with PASS or MISS."""
    draw(recipe.eval_tables(result), console)
    tt = Table(title="targets")
    for col in ("target", "value", "goal", "result"):
        tt.add_column(col)
    for name, row in result["targets"].items():
        tt.add_row(escape(name), fmt(row["value"]), row["goal"],
                   "[green]PASS[/]" if row["pass"] else "[red]MISS[/]")
    console.print(tt)
    if result.get("targets_basis"):
        console.print(f"targets: {escape(result['targets_basis'])}", highlight=False,
                      soft_wrap=True)


@classifier_app.command("eval")
def evaluate(
    bundle: Annotated[Path, typer.Option("--bundle", help="Guard bundle directory.")],
    json_out: Annotated[Path, typer.Option("--json", help="Write the figures here (JSON).")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="Dataset whose test split to use (default: the bundle's training "
                       "data); for a realworld bundle, the public datasets directory "
                       "(default: the one it recorded).")] = None,
    replies: Annotated[str, typer.Option(
        "--replies", help="Output classifier measured on the world's reference answers "
                          "('world') or on model-written replies ('responses': the data's "
                          "own, or --responder's).")] = "world",
    responder: Annotated[str | None, typer.Option(
        "--responder", help="Model directory or URL that writes the test replies missing "
                            "from the data (with --replies responses).")] = None,
    recipe: Annotated[str | None, typer.Option(
        "--recipe", help="Recipe whose data to measure a hand-built bundle on (training "
                         "record 'manual'); the record's own recipe otherwise.")] = None,
    calm_below: Annotated[float | None, typer.Option(
        "--calm-below", help="Measure the output layer under calm release (as `serve "
                             "--calm-below`): a fraction of the output threshold below "
                             "which a reply is released at once.")] = None,
) -> None:
    """Evaluate a bundle on the test split: TPR, FPR, AUPRC, recall per family, streaming."""
    from swisscheese.fileio import atomic_write_text
    from swisscheese.recipes.base import REPLY_SOURCES
    from swisscheese.recipes.evaluate import evaluate_bundle, recorded_recipe

    if replies not in REPLY_SOURCES:
        raise ValueError(f"--replies must be one of {', '.join(REPLY_SOURCES)}, got "
                         f"{replies!r}")
    name = recipe or recorded_recipe(bundle)
    if (responder is not None and name is not None and name in RECIPES
            and not get_recipe(name).reads_replies):
        # Said before the model is loaded, which can take minutes.
        raise ValueError(f"--responder does not apply to {name} bundle {bundle}: its data "
                         "holds no model replies to stream")
    chat = None
    if responder is not None:
        from swisscheese.models import load_model

        chat = load_model(responder)
    result = evaluate_bundle(bundle, data, replies=replies, responder=chat, recipe=recipe,
                             calm_below=calm_below)
    console = Console()
    print_eval(result, get_recipe(name or "organism"), console)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
    console.print(f"[bold green]wrote[/] {escape(str(json_out))}", highlight=False,
                  soft_wrap=True)


def _f5(x: float | None) -> str:
    """FPRs near 0.0005 need more than `fmt`'s 4 decimals."""
    return "-" if x is None else f"{x:.5f}"


@classifier_app.command("calibrate")
def recalibrate(
    bundle: Annotated[Path, typer.Option("--bundle", help="Guard bundle directory.")],
    benign: Annotated[Path, typer.Option(
        "--benign", help="Benign traffic in `classify`'s input format: JSONL with 'prompt' "
                         "or 'messages' and the 'response' each got, or CSV.")],
    out: Annotated[Path, typer.Option("--out", help="New directory for the next version.")],
    target_fpr: Annotated[float, typer.Option(
        "--target-fpr", help="FPR of the guarded system (either layer flags) on BENIGN.")
    ] = 0.0005,
    input_share: Annotated[float, typer.Option(
        "--input-share", help="The input layer's share of the budget; the output layer "
                              "gets the rest (1: input layer only).")] = 0.5,
) -> None:
    """Set both thresholds on a large benign set so that the guarded system stays within
    --target-fpr on it; writes the next bundle version."""
    from swisscheese.bundles.recalibrate import recalibrate_bundle
    from swisscheese.progress import TaskBars, progress_bars

    console = Console()
    with progress_bars(console) as bars:
        rec = recalibrate_bundle(bundle, benign, out, target_fpr=target_fpr,
                                 input_share=input_share, progress=TaskBars(bars))
    t = Table(title=escape(f"{bundle} recalibrated on {rec.n_input:,} benign conversations"))
    for col in ("layer", "threshold before", "after", f"FPR on {benign.name}"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    t.add_row("input", _f5(rec.before["input"]), _f5(rec.after["input"]), _f5(rec.fpr_input))
    t.add_row("output", _f5(rec.before["output"]), _f5(rec.after["output"]),
              _f5(rec.fpr_output))
    t.add_row("guarded (either)", "", "", _f5(rec.fpr_guarded))
    console.print(t)
    console.print(f"[bold green]wrote[/] {escape(str(out))}", highlight=False, soft_wrap=True)
