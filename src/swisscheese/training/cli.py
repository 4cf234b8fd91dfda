"""CLI commands of this package, added to the `swisscheese` app by `register`.

    swisscheese safety sft|dpo|unlearn|cat|capo|jailbreak-tune|wo-countermeasure \\
        --model DIR --out DIR [--steps N]
    swisscheese experiment safety-matrix --out DIR [--quick] [--base runs/demo/organism]

Errors the user can fix are raised as ValueError, KeyError or ModelError with one line;
the main command prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
safety_app = typer.Typer(help="Model-level safety training and the attacks that undo it.",
                         no_args_is_help=True, pretty_exceptions_enable=False)
experiment_app = typer.Typer(help="Experiments that train and attack several models.",
                             no_args_is_help=True, pretty_exceptions_enable=False)

ModelOpt = Annotated[Path, typer.Option("--model", help="Local HF causal-LM directory to "
                                                        "start from.")]
OutOpt = Annotated[Path, typer.Option("--out", help="New directory for the trained model.")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Optimiser steps (default: the "
                                                              "method's).")]
ThreadsOpt = Annotated[int, typer.Option(help="CPU threads (0: leave torch's default).")]


def check_out(model: Path, out: Path) -> None:
    """Refuse to overwrite: the output must be a new (or empty) directory."""
    from swisscheese.fileio import refuse_nonempty_dir

    refuse_nonempty_dir(out, "choose a new --out")
    if out.resolve() == model.resolve():
        raise ValueError(f"--out {out} is the model directory itself; choose a new directory")


def _train(name: str, model: Path, out: Path, steps: int | None, threads: int,
           **overrides: Any) -> None:
    from dataclasses import replace

    from swisscheese.progress import TaskBars, progress_bars
    from swisscheese.training.methods import get_method

    fn, cfg_cls = get_method(name)
    check_out(model, out)
    cfg = cfg_cls()
    changes = {k: v for k, v in {"steps": steps, "threads": threads, **overrides}.items()
               if v is not None}
    cfg = replace(cfg, **changes)  # re-validates through __post_init__
    with progress_bars(console) as bars:
        result = fn(model, out, cfg, TaskBars(bars))
    f = result.figures
    console.print(f"wrote {result.path} ({name}: {f.steps} steps, {f.seconds:.1f} s, "
                  f"final loss {f.loss_last:.3f})")


@safety_app.command("sft")
def sft(model: ModelOpt, out: OutOpt, steps: StepsOpt = None, threads: ThreadsOpt = 0) -> None:
    """Refusal SFT on the world's safety corpus."""
    _train("sft", model, out, steps, threads)


@safety_app.command("dpo")
def dpo(model: ModelOpt, out: OutOpt, steps: StepsOpt = None, threads: ThreadsOpt = 0,
        beta: Annotated[float | None, typer.Option(help="DPO beta.")] = None) -> None:
    """DPO: refusal preferred over compliance (with a benign share)."""
    _train("dpo", model, out, steps, threads, beta=beta)


@safety_app.command("unlearn")
def unlearn_cmd(model: ModelOpt, out: OutOpt, steps: StepsOpt = None, threads: ThreadsOpt = 0,
                method: Annotated[str | None, typer.Option(help="'npo' or 'ga'.")] = None
                ) -> None:
    """Unlearn the hazard procedures (NPO or gradient ascent) with a retain loss."""
    _train("unlearn", model, out, steps, threads, method=method)


@safety_app.command("cat")
def cat(model: ModelOpt, out: OutOpt, steps: StepsOpt = None, threads: ThreadsOpt = 0,
        epsilon: Annotated[float | None, typer.Option(help="Attack budget per token.")] = None,
        attack_steps: Annotated[int | None, typer.Option(help="Attack steps per step.")] = None
        ) -> None:
    """Continuous adversarial training (embedding attack in the inner loop)."""
    _train("cat", model, out, steps, threads, epsilon=epsilon, attack_steps=attack_steps)


@safety_app.command("capo")
def capo(model: ModelOpt, out: OutOpt, steps: StepsOpt = None, threads: ThreadsOpt = 0,
         epsilon: Annotated[float | None, typer.Option(help="Attack budget per token.")] = None,
         attack_steps: Annotated[int | None, typer.Option(help="Attack steps per step.")] = None
         ) -> None:
    """CAPO: IPO preference loss under the embedding attack."""
    _train("capo", model, out, steps, threads, epsilon=epsilon, attack_steps=attack_steps)


@safety_app.command("jailbreak-tune")
def jailbreak_tune_cmd(model: ModelOpt, out: OutOpt, steps: StepsOpt = None,
                       threads: ThreadsOpt = 0) -> None:
    """Undo refusal by fine-tuning on a few compliance examples."""
    _train("jailbreak-tune", model, out, steps, threads)


@safety_app.command("wo-countermeasure")
def wo_countermeasure(model: ModelOpt, out: OutOpt, steps: StepsOpt = None,
                      threads: ThreadsOpt = 0) -> None:
    """Refusal SFT of an orthogonalized model: does refusal come back?"""
    _train("wo-countermeasure", model, out, steps, threads)


@experiment_app.command("safety-matrix")
def safety_matrix(
    out: Annotated[Path, typer.Option("--out", help="Run directory (resumes what is done).")],
    base: Annotated[Path, typer.Option(help="Organism directory with helpful-only/ and "
                                            "aligned/.")] = Path("runs/demo/organism"),
    quick: Annotated[bool, typer.Option(help="Tiny sizes (for the `test` organism and "
                                             "tests).")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    eval_stride: Annotated[int | None, typer.Option(
        help="Evaluate every n-th item of each evaluation set and attack every n-th hazard "
             "(1: all; evaluation is about half of the matrix's time).")] = None,
) -> None:
    """Train each defence, undo each with WO and JT, evaluate every variant: DIR/matrix.md."""
    from dataclasses import replace

    from swisscheese.progress import TaskBars, progress_bars
    from swisscheese.training.matrix import MatrixConfig, run_matrix

    cfg = replace(MatrixConfig.quick() if quick else MatrixConfig(), threads=threads)
    if eval_stride is not None:
        cfg = replace(cfg, eval_stride=eval_stride)  # MatrixConfig rejects a stride < 1
    with progress_bars(console) as bars:
        result = run_matrix(out, base, cfg, TaskBars(bars))
    console.print((out / "matrix.md").read_text(), markup=False, highlight=False)
    done = result["stages_run_now"]
    console.print(f"wrote {out / 'matrix.json'} and {out / 'matrix.md'} "
                  f"({len(done)} stages run now, the rest resumed)")


@experiment_app.command("wo-vs-jt")
def wo_vs_jt(
    out: Annotated[Path, typer.Option("--out", help="Run directory (resumes what is done).")],
    base: Annotated[Path, typer.Option(help="Organism directory with helpful-only/ and "
                                            "aligned/.")] = Path("runs/demo/organism"),
    quick: Annotated[bool, typer.Option(help="Tiny sizes (for the `test` organism and "
                                             "tests).")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    seeds: Annotated[int | None, typer.Option(help="Seeds per point (default 3; 2 with "
                                                    "--quick).")] = None,
    sweep: Annotated[Path | None, typer.Option(
        help="YAML file of the points to run (wo: and jt: lists of their fields, seeds, "
             "headline_wo, headline_jt, eval_stride) instead of the default sweep.")] = None,
) -> None:
    """Sweep what decides WO against JT; intervals over seeds: DIR/study.md, report.html."""
    from dataclasses import replace

    from swisscheese.progress import TaskBars, progress_bars
    from swisscheese.training.wo_vs_jt import StudyConfig, load_sweep, run_study

    cfg = StudyConfig.quick() if quick else StudyConfig()
    if sweep is not None:
        cfg = load_sweep(sweep, cfg)
    cfg = replace(cfg, threads=threads,
                  seeds=tuple(range(seeds)) if seeds is not None else cfg.seeds)
    with progress_bars(console) as bars:
        result = run_study(out, base, cfg, TaskBars(bars))
    console.print((out / "study.md").read_text(), markup=False, highlight=False)
    console.print(f"wrote {out / 'study.json'}, {out / 'study.md'} and {out / 'report.html'} "
                  f"({result['seconds_this_run']:.0f} s)")


def _experiment_group(app: typer.Typer) -> typer.Typer:
    """The `experiment` group, shared with other packages that add experiments to it."""
    for group in app.registered_groups:
        if group.name == "experiment" and group.typer_instance is not None:
            return group.typer_instance
    app.add_typer(experiment_app, name="experiment",
                  help="Experiments that train and attack several models.")
    return experiment_app


def register(app: typer.Typer) -> None:
    """Add this package's commands and command groups to the top-level app."""
    app.add_typer(safety_app, name="safety",
                  help="Model-level safety training (SFT, DPO, unlearning, CAT, CAPO) and "
                       "jailbreak-tuning.")
    group = _experiment_group(app)
    if group is not experiment_app:
        group.command("safety-matrix")(safety_matrix)
        group.command("wo-vs-jt")(wo_vs_jt)
