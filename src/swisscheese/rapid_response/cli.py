"""`swisscheese patch`: rapid response, the next bundle version from a few reported jailbreaks.

Errors the user can fix (a bad jailbreaks line, an existing --out, a bundle without its
training record) are ValueErrors with one-line messages; the main command prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    out: Annotated[Path, typer.Option("--out", help="Directory for the new bundle version "
                                                    "(must not exist or be empty).")],
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="Guard bundle to patch (default with --deploy or --from-gateway: "
                         "the bundle that gateway serves).")] = None,
    jailbreaks: Annotated[Path | None, typer.Option(
        "--jailbreaks", help="Reported jailbreaks: JSONL with 'prompt' and optional "
                             "'response', or text with one prompt per line.")] = None,
    from_gateway: Annotated[str | None, typer.Option(
        "--from-gateway", help="Take the open reports from this gateway's store instead "
                               "of a file (the challenge page's report button and POST "
                               "/admin/jailbreaks put them there); they are marked patched "
                               "once the new bundle is deployed.")] = None,
    deploy: Annotated[str | None, typer.Option(
        "--deploy", help="Hot-swap the new bundle into the gateway at this URL (its "
                         "/admin/bundle endpoint; the path must be readable there).")] = None,
    admin_key: Annotated[str | None, typer.Option(
        "--admin-key", envvar="SWISSCHEESE_ADMIN_KEY",
        help="The gateway's admin key (for --from-gateway and --deploy).")] = None,
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
    """Proliferate reported jailbreaks, retrain, recalibrate, write the next bundle version;
    with --deploy, hot-swap it into the running gateway."""
    from swisscheese.models.base import ModelError
    from swisscheese.rapid_response.gateway import GatewayAdminError

    try:
        if data is not None and datasets is not None:
            raise ValueError("give --data (an organism bundle's dataset) or --datasets (a "
                             "realworld bundle's public datasets), not both")
        if (jailbreaks is None) == (from_gateway is None):
            raise ValueError("give exactly one of --jailbreaks FILE or --from-gateway URL")
        job = PatchJob(bundle, jailbreaks, from_gateway, deploy, admin_key, out, llm, seed,
                       n_requests, heldout_share, llm_variants, data or datasets, report_json)
        job.run(Console())
    except (ValueError, KeyError, FileNotFoundError, ModelError, GatewayAdminError) as e:
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise fail(message) from None


@dataclass
class PatchJob:
    """One `swisscheese patch`: where the reports come from, the patch, the deployment."""

    bundle: Path | None
    jailbreaks: Path | None
    from_gateway: str | None
    deploy: str | None
    admin_key: str | None
    out: Path
    llm: str | None
    seed: int
    n_requests: int
    heldout_share: float
    llm_variants: int
    data: Path | None
    report_json: Path | None

    def admin(self, url: str) -> Any:
        from swisscheese.rapid_response.gateway import GatewayAdmin

        if not self.admin_key:
            raise ValueError(f"{url}: give --admin-key (or SWISSCHEESE_ADMIN_KEY) to call the "
                             "gateway's admin API")
        return GatewayAdmin(url, self.admin_key)

    def inputs(self) -> tuple[Path, list[Any]]:
        """(the bundle to patch, the reports), checked before any work."""
        from swisscheese.rapid_response.patch import check_out
        from swisscheese.rapid_response.reports import read_jailbreaks

        check_out(self.out)
        if self.from_gateway is not None:
            reports = self.admin(self.from_gateway).open_reports()
            if not reports:
                raise ValueError(f"{self.from_gateway}: no open jailbreak reports to patch")
        else:
            reports = read_jailbreaks(self.jailbreaks)  # type: ignore[arg-type]
        bundle = self.bundle
        if bundle is None:
            url = self.deploy or self.from_gateway
            if url is None:
                raise ValueError("give --bundle (or --deploy/--from-gateway, whose gateway's "
                                 "current bundle is then patched)")
            path = self.admin(url).bundle().get("path")
            if not path:
                raise ValueError(f"{url}: the gateway serves no bundle; give --bundle")
            bundle = Path(path)
        return bundle, reports

    def run(self, console: Console) -> None:
        from swisscheese.progress import TaskBars, progress_bars
        from swisscheese.rapid_response.patch import patch_bundle

        bundle, reports = self.inputs()
        chat = None
        if self.llm is not None:
            from swisscheese.models import load_model

            chat = load_model(self.llm)
        with progress_bars(console) as bars:
            report = patch_bundle(bundle, reports, self.out, llm=chat, seed=self.seed,
                                  n_requests=self.n_requests, heldout_share=self.heldout_share,
                                  llm_variants=self.llm_variants, data_dir=self.data,
                                  progress=TaskBars(bars))
        d = report.to_dict()
        print_patch_report(d, console)
        if self.report_json is not None:
            from swisscheese.fileio import atomic_write_text

            self.report_json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.report_json, json.dumps(d, indent=2) + "\n")
            console.print(f"[bold green]wrote[/] {escape(str(self.report_json))}",
                          highlight=False)
        console.print(f"[bold green]wrote[/] {escape(str(self.out))} (bundle v{report.version}, "
                      f"parent v{report.parent_version})", highlight=False, soft_wrap=True)
        if self.deploy is not None:
            self.deploy_and_resolve(console, [r.line for r in reports])
        elif self.from_gateway is not None:
            console.print("the reports stay open until the bundle is deployed (--deploy)",
                          highlight=False)

    def deploy_and_resolve(self, console: Console, ids: list[int]) -> None:
        body = self.admin(self.deploy).deploy(self.out)  # type: ignore[arg-type]
        console.print(f"[bold green]deployed[/] bundle version {body['version']} (was "
                      f"{body['previous_version']}) to {escape(str(self.deploy))} in "
                      f"{body['took_ms']:.0f} ms", highlight=False, soft_wrap=True)
        if self.from_gateway is not None:
            n = self.admin(self.from_gateway).resolve(ids, int(body["version"]))
            console.print(f"marked {n} report(s) patched by version {body['version']}",
                          highlight=False)


def register(app: typer.Typer) -> None:
    """Add `swisscheese patch` to the top-level app."""
    app.command("patch")(patch)
