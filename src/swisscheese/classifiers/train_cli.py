"""`swisscheese classifier train|eval`: train a guard bundle, and measure it against targets.

`classifier_app` is a Typer app; the main CLI registers it as `swisscheese classifier`.
Errors the user can fix are raised as ValueError or KeyError with a one-line message (a
bad bundle raises BundleError, a ValueError); the main `swisscheese` command prints them
as one red line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swisscheese.classifiers.train import DEFAULT_HELDOUT, PRESETS, TrainConfig

classifier_app = typer.Typer(help="Train guard bundles and evaluate them against targets.",
                             no_args_is_help=True, pretty_exceptions_enable=False)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4f}"
    return escape(str(x))


@classifier_app.command("train")
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory: data/ and bundle/ go "
                                                     "inside it.")],
    preset: Annotated[str, typer.Option(help=f"What to train on: {' or '.join(PRESETS)}.")
                      ] = "organism",
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
                          f"(repeatable; default: {', '.join(DEFAULT_HELDOUT)}; 'none' holds "
                          "out nothing).")] = None,
    responder: Annotated[str | None, typer.Option(
        "--responder", help="Model directory or OpenAI-compatible URL whose replies train "
                            "the output classifier (default: the world's answers).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of data, augmentation and training.")] = 0,
    n_per_category: Annotated[int, typer.Option(
        "--n-per-category", help="Records generated per constitution category.")
    ] = TrainConfig.n_per_category,
    augment: Annotated[int, typer.Option(
        help="Disguised copies of each plain training prompt (0: none).")
    ] = TrainConfig.augment,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace OUT/data and OUT/bundle if they exist.")] = False,
    backend: Annotated[str, typer.Option(
        "--backend", help="Input classifier backend (ngram, transformer, probe, hf-finetune, "
                          "...); the output classifier is its streaming twin unless "
                          "--output-backend is given.")] = TrainConfig.backend,
    output_backend: Annotated[str | None, typer.Option(
        "--output-backend", help="Streaming backend of the output classifier (e.g. "
                                 "ngram-stream); needed for a backend without a streaming "
                                 "twin (decoding, hf-finetune).")] = None,
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
) -> None:
    """Train input and output classifiers and write a calibrated guard bundle."""
    if preset == "realworld":
        from swisscheese.classifiers.realworld import train_realworld_cli

        given = [n for n, v in (("--constitution", constitution), ("--data", data),
                                ("--responder", responder), ("--model-dir", model_dir),
                                ("--output-backend", output_backend))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} do(es) not apply to --preset realworld, "
                             "which trains on the public datasets (--datasets)")
        held_rw = None if not heldout else tuple(h for h in heldout if h != "none")
        train_realworld_cli(out, datasets, limit, target_fpr, held_rw, augment, seed, force,
                            backend)
        return
    from swisscheese.classifiers.bundle import load_bundle
    from swisscheese.classifiers.train import (
        check_backend,
        check_preset,
        resolve_constitution,
        train_bundle,
    )
    from swisscheese.progress import TaskBars, progress_bars

    # Everything cheap to check is checked before a model is loaded or data generated.
    check_preset(preset)
    const = resolve_constitution(constitution)
    cfg = TrainConfig(n_per_category=n_per_category, augment=augment, backend=backend,
                      output_backend=output_backend,
                      model_dir=None if model_dir is None else str(model_dir))
    check_backend(cfg)
    # No --heldout: the defaults (or, with --data, the data's own held-out families).
    held = None if not heldout else tuple(h for h in heldout if h != "none")
    chat = None
    if responder is not None:
        from swisscheese.models import load_model

        chat = load_model(responder)

    console = Console()
    with progress_bars(console) as bars:
        path = train_bundle(out, preset, const, data,
                            heldout=held,
                            target_fpr=target_fpr, responder=chat, seed=seed,
                            progress=TaskBars(bars), config=cfg, overwrite=force)
    b = load_bundle(path)
    m = b.metrics
    t = Table(title=f"guard bundle v{b.version}: {escape(str(path))}")
    t.add_column("measure")
    t.add_column("input", justify="right")
    t.add_column("output", justify="right")
    t.add_row("threshold", _fmt(b.thresholds["input"]), _fmt(b.thresholds["output"]))
    t.add_row("calibration FPR (val)", _fmt(m["input"]["calibration_fpr"]),
              _fmt(m["output"]["calibration_fpr"]))
    t.add_row("calibration texts", _fmt(m["input"]["calibration_n"]),
              _fmt(m["output"]["calibration_n"]))
    t.add_row("training texts", _fmt(m["input"]["train_n"]), _fmt(m["output"]["train_n"]))
    val = m.get("validation", {})
    t.add_row("val TPR / FPR", f"{_fmt(val.get('input_tpr'))} / {_fmt(val.get('input_fpr'))}",
              "-")
    console.print(t)
    console.print(f"target FPR {b.target_fpr}; held out of training: "
                  f"{escape(', '.join(m.get('heldout_families', [])) or 'none')}",
                  highlight=False, soft_wrap=True)
    console.print(f"[bold green]wrote[/] {escape(str(path))} (data: "
                  f"{escape(str(m['data']['dir']))})", highlight=False, soft_wrap=True)


def print_eval(result: dict[str, Any], console: Console) -> None:
    """The evaluation as two tables: figures, and targets with PASS or MISS."""
    if result.get("kind") == "realworld":
        from swisscheese.classifiers.realworld import figure_lines

        t = Table(title=f"realworld bundle v{result['bundle_version']} on "
                        f"{escape(result['data'])} (held-out splits)")
        t.add_column("measure")
        t.add_column("value", justify="right")
        for label, value in figure_lines(result["realworld"]):
            t.add_row(escape(label), value)
        console.print(t)
        console.print(f"output stop rate: {escape(result['output']['note'])}", highlight=False,
                      soft_wrap=True)
        differ = result.get("recorded_figures_differ")
        if differ:
            console.print("[yellow]differs from the figures recorded at training:[/] "
                          f"{escape(', '.join(differ))}", highlight=False, soft_wrap=True)
        elif differ is not None:
            console.print("figures equal those recorded at training", highlight=False)
    else:
        _print_organism_eval(result, console)
    tt = Table(title="targets")
    for col in ("target", "value", "goal", "result"):
        tt.add_column(col)
    for name, row in result["targets"].items():
        tt.add_row(escape(name), _fmt(row["value"]), row["goal"],
                   "[green]PASS[/]" if row["pass"] else "[red]MISS[/]")
    console.print(tt)
    if result.get("targets_basis"):
        console.print(f"targets: {escape(result['targets_basis'])}", highlight=False,
                      soft_wrap=True)


def _print_organism_eval(result: dict[str, Any], console: Console) -> None:
    inp, outp = result["input"], result["output"]
    t = Table(title=f"bundle v{result['bundle_version']} on {escape(result['data'])} (test)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("input TPR (trained families)", _fmt(inp["tpr"]))
    t.add_row("input TPR (all families)", _fmt(inp["tpr_all"]))
    t.add_row("input FPR (harmless prompts)", _fmt(inp["fpr"]))
    t.add_row("  trained / held-out families",
              f"{_fmt(inp['fpr_trained_families'])} / {_fmt(inp['fpr_heldout_families'])}")
    t.add_row("input AUPRC", _fmt(inp["auprc"]))
    t.add_row("over-refusal (look-alikes)", _fmt(inp["overrefusal"]))
    t.add_row("held-out recall (" + escape(", ".join(inp["heldout_families"]) or "none") + ")",
              _fmt(inp["heldout_recall"]))
    for fam, v in inp["recall_by_family"].items():
        mark = " (held out)" if fam in inp["heldout_families"] else ""
        t.add_row(f"  recall {escape(fam)}{mark}", _fmt(v))
    t.add_row("output stop rate before 25% of details", _fmt(outp["stop_rate_25"]))
    # By reply form for the world's answers, by prompt family for model-written replies.
    for var, v in (outp.get("stop_rate_25_by_variant")
                   or outp.get("stop_rate_25_by_family") or {}).items():
        t.add_row(f"  {escape(var)}", _fmt(v))
    t.add_row("characters released per hazard answer", _fmt(outp["tokens_released_mean"]))
    t.add_row("output FPR (harmless replies)", _fmt(outp["fpr"]))
    console.print(t)


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
) -> None:
    """Evaluate a bundle on the test split: TPR, FPR, AUPRC, recall per family, streaming."""
    from swisscheese.classifiers.evaluate import REPLY_SOURCES, evaluate_bundle, recorded_preset
    from swisscheese.fileio import atomic_write_text

    if replies not in REPLY_SOURCES:
        raise ValueError(f"--replies must be one of {', '.join(REPLY_SOURCES)}, got "
                         f"{replies!r}")
    if responder is not None and recorded_preset(bundle) == "realworld":
        # Said before the model is loaded, which can take minutes.
        raise ValueError(f"--responder does not apply to realworld bundle {bundle}: the "
                         "public datasets hold no model replies to stream")
    chat = None
    if responder is not None:
        from swisscheese.models import load_model

        chat = load_model(responder)
    result = evaluate_bundle(bundle, data, replies=replies, responder=chat)
    console = Console()
    print_eval(result, console)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
    console.print(f"[bold green]wrote[/] {escape(str(json_out))}", highlight=False,
                  soft_wrap=True)
