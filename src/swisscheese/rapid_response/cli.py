"""`swisscheese patch`: rapid response, the next bundle version from a few reported jailbreaks.

Errors the user can fix (a bad jailbreaks line, an existing --out, a bundle without its
training record) are ValueErrors with one-line messages; the main command prints them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swisscheese.clierrors import fail


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}" if isinstance(x, float) else escape(str(x))


def print_patch_report(report: dict[str, Any], console: Console) -> None:
    """Before/after table of a PatchReport's dict."""
    b, a = report["before"], report["after"]
    v = report["variants"]
    t = Table(title=f"rapid response: v{report['parent_version']} -> v{report['version']} "
                    f"({report['reports']} reports; {v['train']} variants trained, "
                    f"{v['heldout_harmful']} harmful + {v['heldout_benign']} harmless held out)")
    t.add_column("measure")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_row("held-out variant ASR (not flagged)", _fmt(b["heldout_asr"]), _fmt(a["heldout_asr"]))
    for k in sorted(set(b["heldout_asr_by_strategy"]) | set(a["heldout_asr_by_strategy"])):
        t.add_row(f"  {escape(k)}", _fmt(b["heldout_asr_by_strategy"].get(k)),
                  _fmt(a["heldout_asr_by_strategy"].get(k)))
    t.add_row("reported prompts flagged", _fmt(b["reported_flagged"]), _fmt(a["reported_flagged"]))
    t.add_row("FPR, benign calibration set", _fmt(b["calibration_fpr"]), _fmt(a["calibration_fpr"]))
    t.add_row("FPR, benign test set", _fmt(b["test_fpr"]), _fmt(a["test_fpr"]))
    t.add_row("FPR, harmless held-out variants", _fmt(b["heldout_benign_fpr"]),
              _fmt(a["heldout_benign_fpr"]))
    t.add_row("TPR, harmful test set", _fmt(b["test_tpr"]), _fmt(a["test_tpr"]))
    t.add_row("input threshold", _fmt(b["threshold"]), _fmt(a["threshold"]))
    console.print(t)
    forms = ", ".join(sorted({f["form"] for f in report["forms"]}))
    console.print(f"attack form(s): {escape(forms)}; output classifier "
                  f"{'retrained' if report['output_retrained'] else 'unchanged'}",
                  highlight=False, soft_wrap=True)


def patch(
    bundle: Annotated[Path, typer.Option("--bundle", help="Guard bundle to patch.")],
    jailbreaks: Annotated[Path, typer.Option(
        "--jailbreaks", help="Reported jailbreaks: JSONL with 'prompt' and optional "
                             "'response', or text with one prompt per line.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the new bundle version "
                                                    "(must not exist or be empty).")],
    llm: Annotated[str | None, typer.Option(
        "--llm", help="Model directory or OpenAI-compatible URL that paraphrases the reports "
                      "and writes new prompts in their style.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of proliferation and the split.")] = 0,
    n_requests: Annotated[int, typer.Option(
        "--n-requests", help="Harmful (and as many harmless) requests put in the attack's "
                             "form.")] = 200,
    heldout_share: Annotated[float, typer.Option(
        "--heldout-share", help="Share of payload groups held out to measure the patch.")
    ] = 0.3,
    llm_variants: Annotated[int, typer.Option(
        "--llm-variants", help="LLM paraphrases and restyled prompts per report.")] = 8,
    data: Annotated[Path | None, typer.Option(
        "--data", help="The bundle's training data (default: where its training record "
                       "says).")
    ] = None,
    datasets: Annotated[Path | None, typer.Option(
        "--datasets", help="Public datasets directory, for a realworld bundle (default: "
                           "../shared/datasets).")] = None,
    report_json: Annotated[Path | None, typer.Option(
        "--report", help="Also write the report here (JSON); it is always in the new "
                         "bundle's metrics['patch'].")] = None,
) -> None:
    """Proliferate reported jailbreaks, retrain, recalibrate, write the next bundle version."""
    from swisscheese.models.base import ModelError

    try:
        if data is not None and datasets is not None:
            raise ValueError("give --data (an organism bundle's dataset) or --datasets (a "
                             "realworld bundle's public datasets), not both")
        _patch(bundle, jailbreaks, out, llm, seed, n_requests, heldout_share, llm_variants,
               data or datasets, report_json)
    except (ValueError, KeyError, FileNotFoundError, ModelError) as e:
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise fail(message) from None


def _patch(bundle: Path, jailbreaks: Path, out: Path, llm: str | None, seed: int,
           n_requests: int, heldout_share: float, llm_variants: int, data: Path | None,
           report_json: Path | None) -> None:
    from swisscheese.fileio import atomic_write_text
    from swisscheese.progress import TaskBars, progress_bars
    from swisscheese.rapid_response.patch import check_out, patch_bundle
    from swisscheese.rapid_response.reports import read_jailbreaks

    # Cheap checks first: nothing is loaded or fitted for a bad file or an existing --out.
    check_out(out)
    reports = read_jailbreaks(jailbreaks)
    chat = None
    if llm is not None:
        from swisscheese.models import load_model

        chat = load_model(llm)
    console = Console()
    with progress_bars(console) as bars:
        report = patch_bundle(bundle, reports, out, llm=chat, seed=seed, n_requests=n_requests,
                              heldout_share=heldout_share, llm_variants=llm_variants,
                              data_dir=data, progress=TaskBars(bars))
    d = report.to_dict()
    print_patch_report(d, console)
    if report_json is not None:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(report_json, json.dumps(d, indent=2) + "\n")
        console.print(f"[bold green]wrote[/] {escape(str(report_json))}", highlight=False)
    console.print(f"[bold green]wrote[/] {escape(str(out))} (bundle v{report.version}, parent "
                  f"v{report.parent_version})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `swisscheese patch` to the top-level app."""
    app.command("patch")(patch)
