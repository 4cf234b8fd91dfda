"""`swisscheese interp ...`: refusal direction, ablation, weight orthogonalization, analyses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

interp_app = typer.Typer(help="Refusal direction, directional ablation, weight "
                              "orthogonalization and the analyses of model-level safety.",
                         no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


def _guard(body: Callable[[], Any]) -> Any:
    """The library's expected errors as one red line and exit code 1, never a traceback."""
    from swisscheese.models.base import ModelError

    try:
        return body()
    except (ModelError, ValueError, KeyError, FileNotFoundError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        Console(stderr=True).print(f"error: {msg}", style="bold red", markup=False,
                                   highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _world_for(model: Path) -> Any:
    from swisscheese.organism.train import read_card
    from swisscheese.world import World

    return World(seed=int((read_card(model) or {}).get("world_seed", 0)))


@interp_app.command("direction")
def direction_cmd(
    model: Annotated[Path, typer.Option(help="HF causal-LM directory (e.g. the aligned "
                                             "organism).")],
    out: Annotated[Path, typer.Option(help="Direction file to write (.safetensors; a .json "
                                           "is written beside it).")],
    layer: Annotated[int | None, typer.Option(
        help="Residual-stream point (0 = embeddings, i = output of layer i-1). Default: "
             "selected by the refusal-bypass effect on a validation split.")] = None,
    position: Annotated[int | None, typer.Option(
        help="Prompt position, negative from the end. Default: selected among the chat "
             "template's post-instruction tokens.")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
) -> None:
    """Compute the refusal direction by difference of means on the world's prompts."""

    def body() -> None:
        import torch

        from swisscheese.interp.direction import compute_refusal_direction
        from swisscheese.interp.prompts import world_prompt_sets
        from swisscheese.models.hf import HFChatModel
        from swisscheese.progress import TaskBars, progress_bars

        if threads:
            torch.set_num_threads(threads)
        m = HFChatModel(model)  # fails fast on a bad directory, before any work
        sets = world_prompt_sets(_world_for(model))
        with progress_bars(console) as bars:
            d = compute_refusal_direction(m, sets.harmful, sets.harmless, layer, position,
                                          sets.val_harmful, sets.val_harmless,
                                          progress=TaskBars(bars, "direction "))
        path = d.save(out)
        cands = d.meta.get("candidates", [])
        if cands:
            t = Table(title="candidates (ablated on the validation split)")
            for col in ("layer", "position", "refusal score", "harmless KL", "refusal rate"):
                t.add_column(col, justify="right")
            for c in cands:
                rate = c.get("ablated_refusal_rate")
                t.add_row(str(c["layer"]), str(c["position"]), f"{c['refusal_score']:.3f}",
                          f"{c['harmless_kl']:.4f}", "-" if rate is None else f"{rate:.3f}")
            console.print(t)
        console.print(f"layer {d.layer}, position {d.position}, norm {d.meta['norm']:.3f}; "
                      f"wrote {escape(str(path))}", highlight=False)

    _guard(body)


@interp_app.command("ablate")
def ablate_cmd(
    model: Annotated[Path, typer.Option(help="HF causal-LM directory.")],
    direction: Annotated[Path, typer.Option(help="Direction file from `interp direction`.")],
    prompt: Annotated[str, typer.Option(help="The user message.")],
    max_new_tokens: Annotated[int, typer.Option(help="Reply length in tokens.")] = 128,
) -> None:
    """Generate a reply with and without the direction ablated."""

    def body() -> None:
        from swisscheese.interp.ablation import ablate_direction
        from swisscheese.interp.direction import RefusalDirection
        from swisscheese.models.base import GenerationParams
        from swisscheese.models.hf import HFChatModel

        d = RefusalDirection.load(direction)
        m = HFChatModel(model)
        d.check_compatible(m)
        params = GenerationParams(max_new_tokens=max_new_tokens)
        plain = m.generate(prompt, params).content
        with ablate_direction(m, d):
            ablated = m.generate(prompt, params).content
        console.print("[bold]without ablation[/]")
        console.print(plain, markup=False, highlight=False)
        console.print("[bold]with the direction ablated[/]")
        console.print(ablated, markup=False, highlight=False)

    _guard(body)


@interp_app.command("orthogonalize")
def orthogonalize_cmd(
    model: Annotated[Path, typer.Option(help="HF causal-LM directory to start from.")],
    direction: Annotated[Path, typer.Option(help="Direction file from `interp direction`.")],
    out: Annotated[Path, typer.Option(help="New model directory to write.")],
) -> None:
    """Write a copy of MODEL with the direction orthogonalized out of its weights."""

    def body() -> None:
        from swisscheese.interp.orthogonalize import orthogonalize_model

        path = orthogonalize_model(model, direction, out)
        console.print(f"wrote {escape(str(path))}", highlight=False)

    _guard(body)


@interp_app.command("analyze")
def analyze_cmd(
    helpful: Annotated[Path, typer.Option(help="Helpful-only model directory.")],
    aligned: Annotated[Path, typer.Option(help="Aligned model directory.")],
    out: Annotated[Path, typer.Option(help="Directory for analysis.json and report.html.")],
    direction: Annotated[list[Path] | None, typer.Option(
        help="Direction files to compare by cosine (repeatable).")] = None,
    per_family: Annotated[int, typer.Option(
        help="Jailbreak prompts per attack family.")] = 16,
) -> None:
    """Separation of safe/unsafe/jailbreak activations, the safety weight delta, and
    cosines of refusal directions; JSON and an HTML report with plots."""

    def body() -> None:
        from swisscheese.interp.study import run_analysis
        from swisscheese.models.hf import check_model_dir
        from swisscheese.progress import TaskBars, progress_bars

        check_model_dir(helpful)
        check_model_dir(aligned)
        dirs = {p.with_suffix("").name: str(p) for p in direction or []}
        with progress_bars(console) as bars:
            r = run_analysis(helpful, aligned, out, _world_for(aligned), dirs, per_family,
                             progress=TaskBars(bars, "analyze "))
        t = Table(title="key numbers")
        t.add_column("measure")
        t.add_column("value", justify="right")
        for k, v in r["key_numbers"].items():
            t.add_row(k, escape(str(v)))
        console.print(t)
        console.print(f"wrote {escape(str(out / 'analysis.json'))} and "
                      f"{escape(str(out / 'report.html'))}", highlight=False)

    _guard(body)


def register(app: typer.Typer) -> None:
    """Add this package's commands and command groups to the top-level app."""
    app.add_typer(interp_app, name="interp")
