"""`swisscheese data ...`: synthetic classifier data from a constitution.

Errors the user can fix are raised as ValueError or KeyError with a one-line message;
the main `swisscheese` command prints those as one red line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from swisscheese.data.generate import (
    DATA_BACKENDS,
    check_out_dir,
    generate_dataset,
    resolve_converters,
)

data_app = typer.Typer(help="Synthetic classifier data: requests labelled by a constitution.",
                       no_args_is_help=True, pretty_exceptions_enable=False)


@data_app.callback()
def _data() -> None:
    """Synthetic classifier data: requests labelled by a constitution."""
    # A callback keeps `generate` a named subcommand even while it is the only one.


@data_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory for train/val/test.jsonl and "
                                                     "manifest.json.")],
    constitution: Annotated[Path | None, typer.Option(
        "--constitution", help="Constitution YAML file (default: the world's default).")] = None,
    backend: Annotated[str, typer.Option(
        help=f"Where requests come from: {' or '.join(DATA_BACKENDS.names())}.")] = "world",
    model: Annotated[str | None, typer.Option(
        "--model", help="Model directory or OpenAI-compatible URL: writes the requests for the "
                        "llm backend; answers them as the responder for both backends.")] = None,
    n_per_category: Annotated[int, typer.Option(
        "--n-per-category", help="Records (world) or requests (llm) per category.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    world_seed: Annotated[int, typer.Option(
        "--world-seed", help="Seed of the world whose hazards the world backend uses.")] = 0,
    converter: Annotated[list[str] | None, typer.Option(
        "--converter", help="Converter to apply (repeatable; 'a+b' stacks; default: all).")
    ] = None,
    heldout_converter: Annotated[list[str] | None, typer.Option(
        "--heldout-converter", help="Converter or world family whose records go to the test "
                                    "split only (repeatable).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the output directory if it is not empty.")] = False,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Answer the records (and write the llm backend's requests) with one "
                      "copy of --model per Ray actor: a local instance, or --ray-address. "
                      "The responses, in fixed batches, run in parallel; the llm backend's "
                      "expansion rounds depend on each other and stay in order.")] = False,
    ray_address: Annotated[str | None, typer.Option(
        envvar="RAY_ADDRESS", help="Ray cluster for --ray (HOST:PORT or ray://HOST:PORT); "
                                   "unset: a local instance.")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        help="Ray actors (default: one per CPU of the cluster).")] = None,
) -> None:
    """Generate labelled requests for every category of a constitution."""
    from swisscheese.constitution.loader import default_constitution, load_constitution
    from swisscheese.progress import TaskBars, progress_bars

    # Everything that can be checked is checked before a model is loaded (which is slow).
    c = default_constitution() if constitution is None else load_constitution(constitution)
    DATA_BACKENDS.get(backend)  # an unknown name lists the registered ones
    if backend == "llm" and model is None:
        raise ValueError("the llm backend needs --model SPEC (a model directory or an "
                         "OpenAI-compatible URL) to write requests")
    resolve_converters(converter or None, heldout_converter or ())
    check_out_dir(out, force)

    chat = _writer(model, ray, ray_address, ray_workers)
    world = None
    if backend == "world":
        from swisscheese.world.core import World

        world = World(seed=world_seed)

    console = Console()
    with progress_bars(console) as bars:
        manifest = generate_dataset(
            c, backend, out, n_per_category=n_per_category, converters=converter or None,
            heldout_converters=heldout_converter or (), seed=seed,
            responder=chat if backend == "world" else None, model=chat, world=world,
            progress=TaskBars(bars), overwrite=force)
    _print_manifest(console, out, manifest, n_per_category)


def _writer(model: str | None, ray: bool, ray_address: str | None,
            ray_workers: int | None) -> Any:
    """The model that writes and answers the records: a ChatModel, Ray actors that answer
    like one, or None."""
    if (ray or ray_address) and model is None:
        raise ValueError("--ray runs the model on Ray actors: give --model SPEC")
    if model is None:
        return None
    if ray or ray_address:
        from swisscheese.raycluster import ModelActors, connect, default_workers

        connect(ray_address)  # before any work: an unreachable cluster leaves nothing
        return ModelActors(model, default_workers(ray_workers))
    from swisscheese.models import load_model

    return load_model(model)


def _print_manifest(console: Console, out: Path, manifest: dict[str, Any],
                    n_per_category: int) -> None:
    counts = manifest["counts"]
    splits = ", ".join(f"{s} {n}" for s, n in counts["split"].items())
    labels = counts["label"]
    console.print(f"[bold green]wrote[/] {escape(str(out))}: {counts['total']} records "
                  f"({splits}; harmful {labels.get('1', 0)}, harmless {labels.get('0', 0)})",
                  highlight=False, soft_wrap=True)
    if manifest["skipped_categories"]:
        console.print("[yellow]skipped (no world link):[/] "
                      + escape(", ".join(manifest["skipped_categories"])), highlight=False,
                      soft_wrap=True)
    if manifest["shortfall"]:
        short = ", ".join(f"{k} {v}" for k, v in manifest["shortfall"].items())
        console.print(f"[yellow]fewer than {n_per_category} distinct:[/] {escape(short)}",
                      highlight=False, soft_wrap=True)
