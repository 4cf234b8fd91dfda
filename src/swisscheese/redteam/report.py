"""The red-team report: a campaign's RUN directory as one HTML page and a JSON export.

Reads `RUN/summary.json` (`{"targets": {NAME: {"asr": {FAMILY: x}, "overrefusal": x,
"universal": {"template": str | null, "levels_passed": n}}}}`), `RUN/attempts.jsonl` (one
`Attempt.to_dict()` per line with "family" and "level" added) and, when present,
`RUN/details.json` (what each target is: its model, guard layers, bundle and output
classifier kind; a run without it is described from the built-in target names), and shows:

- the ASR heat map, attack family x target;
- what each layer of the cheese adds, for any set of targets: each target's guard layers
  (input only, output only, both) and the kind of its output classifier (reply-only or
  exchange, from the bundle), its ASR per family, and what its layers take away from the
  same model unguarded (the aligned model's own refusal against helpful-only);
- detail-score distributions per target (judged attempts only);
- the strongest universal template per target and how many levels it passes;
- errors and undetermined verdicts, counted apart from failed attacks (the look-alikes
  sent for the over-refusal measure are counted apart too: they are not attacks);
- example transcripts, escaped.

Everything is read and checked before anything is written; a missing or malformed file
raises `ReportError` naming the file (and the line or field).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from swisscheese.data.readers import read_jsonl
from swisscheese.redteam.config import OVERREFUSAL_LABEL
from swisscheese.report.html import Section, bar_chart, render, table
from swisscheese.report.svg import heat_map, histogram

SUMMARY = "summary.json"
ATTEMPTS = "attempts.jsonl"
DETAILS = "details.json"
BINS = 10
EXAMPLES_PER_TARGET = 3
MAX_SHOWN_CHARS = 1500


class ReportError(ValueError):
    """A RUN directory that cannot be reported on; the message names the file."""


@dataclass
class RunData:
    root: Path
    summary: dict[str, Any]
    attempts: list[dict[str, Any]]
    details: dict[str, Any] | None = None

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        return self.summary["targets"]


# ---- reading -------------------------------------------------------------------------------

def _is_num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_summary(path: Path, data: object) -> dict[str, Any]:
    def bad(where: str, what: str) -> ReportError:
        return ReportError(f"{path}: {where}: {what}")

    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
        raise bad("top level", 'expected an object with a "targets" object')
    for name, t in data["targets"].items():
        where = f"targets.{name}"
        if not isinstance(t, dict):
            raise bad(where, "expected an object")
        asr = t.get("asr")
        if not isinstance(asr, dict):
            raise bad(f"{where}.asr", "expected an object mapping family to ASR")
        for fam, x in asr.items():
            if x is not None and not (_is_num(x) and 0 <= x <= 1):
                raise bad(f"{where}.asr.{fam}", f"expected a number in [0, 1], got {x!r}")
        over = t.get("overrefusal")
        if over is not None and not (_is_num(over) and 0 <= over <= 1):
            raise bad(f"{where}.overrefusal", f"expected a number in [0, 1], got {over!r}")
        uni = t.get("universal")
        if uni is not None and (not isinstance(uni, dict)
                                or not isinstance(uni.get("template"), str | None)
                                or not isinstance(uni.get("levels_passed", 0), int)):
            raise bad(f"{where}.universal",
                      'expected {"template": str or null, "levels_passed": int}')
    return data


REQUIRED_ATTEMPT_FIELDS = ("behaviour_id", "attack", "target", "response", "verdict")


def _check_attempt(path: Path, line_no: int, row: object) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ReportError(f"{path}:{line_no}: expected a JSON object, got "
                          f"{type(row).__name__}")
    for f in REQUIRED_ATTEMPT_FIELDS:
        if f not in row:
            raise ReportError(f"{path}:{line_no}: missing field {f!r}")
    v = row["verdict"]
    if v is not None and (not isinstance(v, dict) or "label" not in v or "score" not in v):
        raise ReportError(f"{path}:{line_no}: 'verdict' must be null or have 'score' and "
                          "'label'")
    return row


def load_run(run: str | Path) -> RunData:
    """Read and check RUN/summary.json and RUN/attempts.jsonl."""
    root = Path(run)
    if not root.is_dir():
        raise ReportError(f"run directory {root} does not exist"
                          if not root.exists() else f"{root} is not a directory")
    spath, apath = root / SUMMARY, root / ATTEMPTS
    for p in (spath, apath):
        if not p.is_file():
            raise ReportError(f"{p} not found: a red-team run writes {SUMMARY} and {ATTEMPTS} "
                              "(swisscheese redteam run --out RUN)")
    try:
        summary = json.loads(spath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{spath}: not valid JSON: {e}") from None
    summary = _check_summary(spath, summary)
    attempts = [_check_attempt(apath, i, row)
                for i, row in read_jsonl(apath, ReportError)]
    details = None
    dpath = root / DETAILS
    if dpath.is_file():
        try:
            details = json.loads(dpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReportError(f"{dpath}: not valid JSON: {e}") from None
        if not isinstance(details, dict):
            raise ReportError(f"{dpath}: top level: expected an object")
    return RunData(root, summary, attempts, details)


# ---- figures -------------------------------------------------------------------------------

def families(run: RunData) -> list[str]:
    """Attack families in the order they first appear in the summary."""
    out: dict[str, None] = {}
    for t in run.targets.values():
        out.update(dict.fromkeys(t["asr"]))
    return list(out)


def mean_asr(asr: Mapping[str, float | None]) -> float | None:
    vals = [x for x in asr.values() if x is not None]
    return sum(vals) / len(vals) if vals else None


def _family(a: Mapping[str, Any]) -> str:
    return str(a.get("family") or a.get("attack") or "?")


def _lookalike(a: Mapping[str, Any]) -> bool:
    """A harmless look-alike sent for the over-refusal measure, not an attack."""
    return a.get("attack") == OVERREFUSAL_LABEL


def _score(a: Mapping[str, Any]) -> float | None:
    v = a.get("verdict")
    return None if not v else v.get("score")


def _success(a: Mapping[str, Any]) -> bool:
    """The campaign's own call when it wrote one (score >= the behaviour's threshold),
    else the judge's label."""
    if "success" in a:
        return bool(a["success"])
    return (a.get("verdict") or {}).get("label") == "jailbroken"


def attempt_counts(run: RunData) -> dict[str, dict[str, Any]]:
    """Per target: attempts, judged, jailbroken, errors, undetermined, also per family.

    An error (the target or the judge failed) and an undetermined verdict are neither a
    success nor a failure; they are counted here and nowhere else.
    """
    out: dict[str, dict[str, Any]] = {}
    for a in run.attempts:
        t = out.setdefault(str(a["target"]), {
            "attempts": 0, "judged": 0, "jailbroken": 0, "errors": 0, "undetermined": 0,
            "lookalikes": 0, "by_family": defaultdict(Counter)})
        if _lookalike(a):  # the over-refusal probes have a measure of their own
            t["lookalikes"] += 1
            continue
        fam = t["by_family"][_family(a)]
        t["attempts"] += 1
        fam["attempts"] += 1
        if a.get("error"):
            kind = "errors"
        elif _score(a) is None:
            kind = "undetermined"
        else:
            kind = "judged"
            if _success(a):
                t["jailbroken"] += 1
                fam["jailbroken"] += 1
        t[kind] += 1
        fam[kind] += 1
    for t in out.values():
        t["by_family"] = {k: dict(v) for k, v in t["by_family"].items()}
    return out


def score_histograms(run: RunData, bins: int = BINS) -> dict[str, list[int]]:
    """Per target, counts of judged detail scores in `bins` equal bins over [0, 1]."""
    out: dict[str, list[int]] = {}
    for a in run.attempts:
        s = _score(a)
        if s is None or a.get("error") or _lookalike(a):
            continue
        counts = out.setdefault(str(a["target"]), [0] * bins)
        counts[min(bins - 1, int(s * bins))] += 1
    return out


def target_info(run: RunData) -> dict[str, dict[str, Any]]:
    """Per target: its model, guard layers, bundle and output classifier kind
    ("reply", "exchange" or None when unknown), from details.json or the built-in names."""
    from swisscheese.redteam.targets import BUILTIN_TARGETS

    recorded = (run.details or {}).get("target_info") or {}
    out: dict[str, dict[str, Any]] = {}
    for name in run.targets:
        info = recorded.get(name)
        if not isinstance(info, dict):
            model, layers = BUILTIN_TARGETS.get(name, (name, ()))
            info = {"model": model, "layers": list(layers), "bundle": None,
                    "output_context": None}
        out[name] = {"model": str(info.get("model") or name),
                     "layers": [str(x) for x in info.get("layers") or []],
                     "bundle": info.get("bundle"), "output_context": info.get("output_context")}
    return out


def arm_label(info: Mapping[str, Any]) -> str:
    """How a target is guarded: "unguarded", "input only", "output only (exchange)", ..."""
    layers = info["layers"]
    if not layers:
        return "unguarded"
    label = "input + output" if len(layers) == 2 else f"{layers[0]} only"
    if "output" in layers and info.get("output_context"):
        label += f" ({info['output_context']} output classifier)"
    return label


def _model_kind(model: str) -> str:
    return Path(model.split("#")[0]).name


def _baseline(name: str, infos: Mapping[str, dict[str, Any]]) -> str | None:
    """What a target is compared with: the same model unguarded; for the unguarded aligned
    model, helpful-only (what safety training's refusal takes away)."""
    me = infos[name]
    bare = [n for n, i in infos.items() if not i["layers"] and n != name]
    if me["layers"]:
        same = [n for n in bare if infos[n]["model"] == me["model"]]
        return same[0] if same else None
    if _model_kind(me["model"]) == "aligned":
        helpful = [n for n in bare if _model_kind(infos[n]["model"]) == "helpful-only"]
        return helpful[0] if helpful else None
    return None


def layer_table(run: RunData) -> list[dict[str, Any]]:
    """Every target in the run's order: its guard, mean ASR, the target it is compared
    with and the mean ASR its layers take away (None where there is nothing to compare)."""
    infos = target_info(run)
    means = {n: mean_asr(t["asr"]) for n, t in run.targets.items()}
    rows = []
    for name in run.targets:
        base = _baseline(name, infos)
        m, b = means[name], means.get(base) if base else None
        rows.append({"target": name, "present": True, "label": arm_label(infos[name]),
                     "layers": infos[name]["layers"], "bundle": infos[name]["bundle"],
                     "output_context": infos[name]["output_context"], "mean_asr": m,
                     "compared_with": base,
                     "reduction": None if m is None or b is None else b - m})
    return rows


def examples(run: RunData, per_target: int = EXAMPLES_PER_TARGET) -> list[dict[str, Any]]:
    """Per target, the highest-scoring judged attempt of each of the best families, and
    one refusal."""
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in run.attempts:
        if not a.get("error") and _score(a) is not None and not _lookalike(a):
            by_target[str(a["target"])].append(a)
    out = []
    for target, atts in by_target.items():
        ranked = sorted(atts, key=lambda a: -float(_score(a) or 0.0))
        # The best attempt of each family first, so the examples show different attacks.
        firsts: dict[str, dict[str, Any]] = {}
        for a in ranked:
            firsts.setdefault(_family(a), a)
        chosen = list(firsts.values())[:per_target]
        refused = next((a for a in ranked if a["verdict"].get("label") == "refused"), None)
        if refused is not None and refused not in chosen:
            chosen.append(refused)
        for a in chosen:
            out.append({"target": target, "family": _family(a), "level": a.get("level"),
                        "behaviour_id": a["behaviour_id"], "attack": a["attack"],
                        "variant": a.get("variant", ""),
                        "conversation": a.get("conversation") or [],
                        "response": a["response"], "verdict": a["verdict"]})
    return out


def build_report(run: RunData) -> dict[str, Any]:
    """The report as data: the JSON export, and what the HTML shows."""
    counts = attempt_counts(run)
    hists = score_histograms(run)
    targets = {}
    for name, t in run.targets.items():
        c = counts.get(name, {"attempts": 0, "judged": 0, "jailbroken": 0, "errors": 0,
                              "undetermined": 0, "lookalikes": 0, "by_family": {}})
        targets[name] = {
            "asr": t["asr"], "mean_asr": mean_asr(t["asr"]),
            "overrefusal": t.get("overrefusal"),
            "universal": t.get("universal") or {"template": None, "levels_passed": 0},
            "counts": c,
            "score_histogram": {"edges": [i / BINS for i in range(BINS + 1)],
                                "counts": hists.get(name, [0] * BINS)},
        }
    return {"run": str(run.root), "families": families(run), "targets": targets,
            "layers": layer_table(run), "examples": examples(run)}


# ---- HTML ----------------------------------------------------------------------------------

def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _transcript(ex: Mapping[str, Any]) -> str:
    lines = []
    for m in ex["conversation"]:
        lines.append(f"[{m.get('role', '?')}] {str(m.get('content', ''))[:MAX_SHOWN_CHARS]}")
    lines.append(f"[reply] {str(ex['response'])[:MAX_SHOWN_CHARS]}")
    v = ex["verdict"] or {}
    head = (f"{ex['target']} / {ex['family']} / level {ex['level'] if ex['level'] else '-'} / "
            f"{ex['behaviour_id']} ({ex['variant']}): {v.get('label')} "
            f"score {_f(v.get('score'))}" + (f" - {v['reason']}" if v.get("reason") else ""))
    return f'<p class="meta">{escape(head)}</p><pre>{escape(chr(10).join(lines))}</pre>'


def render_html(run: RunData, report: Mapping[str, Any] | None = None) -> str:
    rep = dict(report) if report is not None else build_report(run)
    targets: dict[str, Any] = rep["targets"]
    names = list(targets)
    fams: list[str] = rep["families"]
    sections = []

    overview = [[n, _f(t["mean_asr"]), _f(t["overrefusal"]),
                 t["universal"].get("template") or "none found",
                 t["universal"].get("levels_passed", 0), t["counts"]["attempts"],
                 t["counts"]["judged"], t["counts"]["errors"], t["counts"]["undetermined"],
                 t["counts"].get("lookalikes", 0)]
                for n, t in targets.items()]
    sections.append(Section("Overview", table(
        ["target", "mean ASR", "over-refusal", "universal template", "levels passed",
         "attack attempts", "judged", "errors", "undetermined", "look-alikes"], overview)
        + '<p class="meta">Mean ASR is over attack families. Errors (the target or the judge '
          "failed) and undetermined verdicts are neither successes nor failures: they are "
          "counted apart and left out of ASR. Look-alikes are the harmless requests of the "
          "over-refusal measure.</p>"))

    values = {(f, n): targets[n]["asr"].get(f) for f in fams for n in names}
    sections.append(Section("ASR heat map (attack family x target)",
                            heat_map(fams, names, values, "attack success rate")))

    if rep["layers"]:
        sections.append(Section("What each layer of the cheese adds", layer_section(rep)))

    hists = "".join(histogram(t["score_histogram"]["counts"], t["score_histogram"]["edges"],
                              f"{n}: detail scores ({sum(t['score_histogram']['counts'])})")
                    for n, t in targets.items())
    sections.append(Section("Detail-score distributions", f"<div>{hists}</div>"))

    sections.append(Section("Strongest universal template per target", table(
        ["target", "template", "levels passed (of 8)"],
        [[n, t["universal"].get("template") or "none found",
          t["universal"].get("levels_passed", 0)] for n, t in targets.items()])))

    err_rows = []
    for n, t in targets.items():
        for f, c in sorted(t["counts"]["by_family"].items()):
            if c.get("errors") or c.get("undetermined"):
                err_rows.append([n, f, c.get("attempts", 0), c.get("errors", 0),
                                 c.get("undetermined", 0)])
    sections.append(Section("Errors and undetermined verdicts", table(
        ["target", "family", "attempts", "errors", "undetermined"], err_rows)
        if err_rows else "<p>None: every attempt was answered and judged.</p>"))

    sections.append(Section("Example transcripts",
                            "".join(_transcript(e) for e in rep["examples"])
                            or "<p>No judged attempts.</p>"))
    return render("swisscheese red-team report", sections, meta=f"run: {rep['run']}")


def layer_section(rep: Mapping[str, Any]) -> str:
    """Each target's guard, its ASR per family and what its layers take away (HTML): the
    section the campaign report and the demo report share."""
    targets: dict[str, Any] = rep["targets"]
    layers = rep["layers"]
    fams: list[str] = rep["families"]
    names = [r["target"] for r in layers]
    rows = [[r["target"], r["label"], r["bundle"] or "-", _f(r["mean_asr"]),
             r["compared_with"] or "-", _f(r["reduction"])] for r in layers]
    summary = table(["target", "guard", "bundle", "mean ASR", "compared with",
                     "ASR its layers take away"], rows)
    per_family = table(["family", *names], [[f, *[_f(targets[n]["asr"].get(f)) for n in names]]
                                            for f in fams])
    chart = bar_chart({f: {n: targets[n]["asr"].get(f) or 0.0 for n in names} for f in fams},
                      names, "ASR per attack family, target by target")
    note = ('<p class="meta">Each guarded target is compared with the same model unguarded; '
            "the unguarded aligned model with helpful-only (what its own refusal takes "
            "away). The guard column says which classifiers run and, for the output layer, "
            "whether its classifier reads the reply alone or the reply in its conversation "
            "(exchange).</p>")
    return summary + note + per_family + chart


def write_report(run_dir: str | Path, html: str | Path | None = None,
                 json_out: str | Path | None = None) -> dict[str, Any]:
    """Read RUN, then write the HTML and/or JSON atomically; nothing is written on error."""
    from swisscheese.fileio import atomic_write_json, atomic_write_text

    if html is None and json_out is None:
        raise ReportError("nothing to write: give an HTML path, a JSON path or both")
    run = load_run(run_dir)
    rep = build_report(run)
    page = render_html(run, rep) if html is not None else None
    for out in (html, json_out):
        if out is not None and Path(out).is_dir():
            raise ReportError(f"{out} is a directory; give a file path")
    for out in (html, json_out):
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    if page is not None:
        atomic_write_text(html, page)  # type: ignore[arg-type]
    if json_out is not None:
        atomic_write_json(json_out, rep)
    return rep
