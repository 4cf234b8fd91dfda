"""The WO-versus-JT study as Markdown (study.md) and a self-contained HTML report."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from swisscheese.report.html import Section, render, table
from swisscheese.report.svg import interval_chart

LABELS = {"utility": "utility", "decode": "decoding", "refusal": "refusal",
          "overrefusal": "over-refusal", "plain_asr": "plain ASR", "plain_detail": "plain detail",
          "template_asr": "template ASR", "capability": "prefill capability"}
TABLE_METRICS = ("utility", "refusal", "overrefusal", "plain_asr", "template_asr",
                 "plain_detail", "capability", "decode")


def _cell(iv: Mapping[str, Any] | None) -> str:
    if not iv:
        return "-"
    return f"{iv['mean']:.3f} [{iv['lo']:.3f}, {iv['hi']:.3f}]"


def point_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """One row per point: its figures as mean [95% interval] over the seeds."""
    rows = []
    for kind in ("wo", "jt"):
        for label, figs in result["points"][kind].items():
            rows.append([f"{kind} {label}", *(_cell(figs.get(m)) for m in TABLE_METRICS)])
    rows.append(["wo+sft (countermeasure)",
                 *(_cell(result["points"]["wo+sft"].get(m)) for m in TABLE_METRICS)])
    for name, figs in result["fixed"].items():
        rows.append([name, *("-" if figs.get(m) is None else f"{figs[m]:.3f}"
                             for m in TABLE_METRICS)])
    return rows


def claims(result: Mapping[str, Any]) -> list[str]:
    """The comparisons the intervals allow, in words (none where they overlap)."""
    head = result["headline"]
    out = []
    for m, c in head["comparison"].items():
        name = LABELS.get(m, m)
        if c["better"] is None:
            out.append(f"{name}: no claim (WO {c['wo']['mean']:.3f} and JT {c['jt']['mean']:.3f}"
                       " have overlapping intervals)")
        else:
            out.append(f"{name}: {c['better'].upper()} keeps it better (WO "
                       f"{_cell(c['wo'])} vs JT {_cell(c['jt'])})")
    return out


def render_markdown(result: Mapping[str, Any]) -> str:
    head = result["headline"]
    lines = [f"# WO vs JT on the organism (headline: WO {head['wo']}, JT {head['jt']})", "",
             "Figures: mean [95% interval] over seeds " + ", ".join(
                 map(str, result["config"]["seeds"])) + "; ASR, detail and capability on the "
             "hazards never seen in safety training.", "",
             "| point | " + " | ".join(LABELS[m] for m in TABLE_METRICS) + " |",
             "|---|" + "---|" * len(TABLE_METRICS)]
    lines += ["| " + " | ".join(r) + " |" for r in point_rows(result)]
    lines += ["", "## WO against JT", "", *(f"- {c}" for c in claims(result)), "",
              "## The SFT countermeasure after WO", ""]
    for m, c in result["countermeasure"].items():
        sep = "" if c["separated"] else " (intervals overlap)"
        lines.append(f"- {LABELS.get(m, m)}: {c['wo']:.3f} -> {c['wo+sft']:.3f} "
                     f"({c['change']:+.3f}){sep}")
    return "\n".join(lines) + "\n"


def render_html(result: Mapping[str, Any]) -> str:
    head = result["headline"]
    sections = [Section("Every point", table(["point", *(LABELS[m] for m in TABLE_METRICS)],
                                             point_rows(result))),
                Section("WO against JT", "<ul>" + "".join(
                    f"<li>{escape(c)}</li>" for c in claims(result)) + "</ul>")]
    charts = []
    for m in ("utility", "capability", "plain_asr", "refusal"):
        pts = [(f"{kind} {label}", f[m]["mean"], f[m]["lo"], f[m]["hi"])
               for kind in ("wo", "jt") for label, f in result["points"][kind].items()
               if m in f]
        charts.append(interval_chart(pts, LABELS[m], highlight=(f"wo {head['wo']}",
                                                                f"jt {head['jt']}")))
    sections.append(Section("Intervals over seeds", "".join(charts)))
    cm = result["countermeasure"]
    sections.append(Section("The SFT countermeasure after WO", table(
        ["measure", "WO", "WO + SFT", "change", "intervals separate"],
        [[LABELS.get(m, m), c["wo"], c["wo+sft"], c["change"], str(c["separated"])]
         for m, c in cm.items()])))
    return render("Weight orthogonalization versus jailbreak-tuning", sections,
                  f"seeds {result['config']['seeds']}; eval stride "
                  f"{result['config']['eval_stride']}")
