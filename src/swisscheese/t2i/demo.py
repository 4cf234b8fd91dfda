"""The demo's text-to-image section: the organism (reused when its card matches), a short
run of every loop on it, and the run's report beside the demo report."""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path

from rich.console import Console

from swisscheese.report import table

# The demo keeps the T2I part short: a small budget on the organism.
DEMO_RUN = {"budget": 150, "eval_prompts": 30, "judge_images": 200, "grid_prompts": 4,
            "guard": {"benign_prompts": 60}}


def _f(x: object) -> object:
    return "-" if x is None else round(x, 3) if isinstance(x, float) else x


def t2i_demo_section(root: Path, preset: str, retrain: bool, console: Console) -> str:
    from swisscheese.progress import TaskBars, progress_bars
    from swisscheese.t2i.config import from_dict
    from swisscheese.t2i.organism import train_organism
    from swisscheese.t2i.report import write_report
    from swisscheese.t2i.run import T2IRun, organism_ready

    org_preset = "test" if preset == "test" else "demo"
    org = root / "organism"
    run_dir = root / "run"
    with progress_bars(console) as bars:
        if retrain or not organism_ready(org, org_preset, 0):
            console.print(f"training the T2I organism ({org_preset} preset) into {org}")
            train_organism(org, org_preset, seed=0, progress=TaskBars(bars, "t2i "))
            shutil.rmtree(run_dir, ignore_errors=True)  # its figures were for the old one
        else:
            console.print(f"reusing the T2I organism in {org}")
        cfg = from_dict({"organism": str(org), **DEMO_RUN})
        summary = T2IRun(cfg, run_dir, TaskBars(bars, "t2i ")).run()
    write_report(run_dir, root / "report.html")
    cats = summary["categories"]
    rows = [[c, _f(v["prompt_pass_rate"]), _f(v["success_ratio"]),
             _f(v["baseline_success_ratio"]), _f(v["successes_per_100_queries"])]
            for c, v in cats.items()]
    loops = ", ".join(f"{k}: {_f(v['successes_per_100_queries'])}"
                      for k, v in summary["loops"].items())
    g = summary["guard"]
    return (f"<p>T2I organism <code>{escape(str(org))}</code> ({org_preset} preset), "
            f"{cfg.budget} image queries per loop and category.</p>"
            + table(["category", "prompt pass rate", "success ratio (k=5)", "random baseline",
                     "successes / 100 queries"], rows)
            + f"<p>Unique safe successes per 100 image queries: {escape(loops)}. T2I guard "
              f"(both layers): unsafe-image rate {_f(g['unsafe_image_rate'])}, benign block "
              f"rate {_f(g['benign_block_rate'])} (on images the oracle reads as clean "
              f"{_f(g.get('benign_false_block_rate'))}).</p>"
            + '<p>Full report with image grids: <a href="t2i/report.html">t2i/report.html'
              "</a>.</p>")
