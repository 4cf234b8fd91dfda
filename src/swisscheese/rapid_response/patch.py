"""Rapid response: patch a guard bundle against a few reported jailbreaks.

    report = patch_bundle("runs/classifier/bundle", "reported.jsonl", "runs/patched")

After Peng et al. (2024), "Rapid Response: Mitigating LLM Jailbreaks with a Few Examples":
a handful of reported attacks is not enough to train on, so they are first *proliferated*
into many variants of the same attack, and the classifier is retrained on the original
data plus the variants.

1. **Read** the reports (`read_jailbreaks`): JSONL with `prompt` and optional `response`,
   or plain text, one prompt per line. A bad line is an error naming FILE:LINE.
2. **Analyse** each report (`analyse`): find the attack's *form*, an optional instruction
   prefix plus a stack of registered converters that turns a request into the attack
   (Morse, rot13 then character spacing, a jailbreak template ...), by decoding the
   report with every invertible converter and stack of two and keeping the decoding that
   reads as the language of the bundle's data. When no converter explains it, a known
   request from the data found inside the report makes the rest of it a template.
3. **Proliferate** (`proliferate`): the form applied to other requests of the bundle's
   data (`same_form`), harmful ones labelled 1 and harmless ones labelled 0 (so the patch
   learns the payload in the new disguise, not "every Morse text is harmful"); the form
   wrapped in the world's jailbreak families and the registry's templates (`wrapped:*`);
   the form with the prefix of another report, or none (`prefix_swap`); and with an LLM
   (`--llm`), paraphrases of the reports and new prompts in a report's style for other
   requests (`llm_paraphrase`, `llm_restyle`). A report whose form stays unknown is
   proliferated by disguising it whole (`perturbed:*`).
4. **Split** the variants into train and held-out by payload group (a hazard, or a
   request): held-out variants carry requests that no training variant carries, so their
   figures are not near-duplicates of training. Without payloads the split is by strategy.
5. **Retrain** the input classifier on the bundle's own training texts (rebuilt by the
   recipe its training record names, exactly as it built them) plus the training variants,
   and **recalibrate** it on the same benign traffic (the val split's harmless prompts) at
   the bundle's target FPR. The output classifier reads replies, which prompt variants do
   not change: it is kept, unless reports carry responses, which are then added to its
   training data as harmful replies and it is retrained and recalibrated too.
6. **Write** the next version (version + 1, parent_version set) atomically; an existing
   non-empty output directory is refused. The figures (`PatchReport`) go into the new
   bundle's `metrics["patch"]`: attack success rate of the held-out variants (harmful ones
   not flagged) before and after, and the false-positive rate before and after on the
   benign calibration set, the benign test set and the harmless held-out variants.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.bundles import (
    BundleError,
    GuardBundle,
    calibrate,
    load_bundle,
    save_bundle,
    stream_max_score,
)
from swisscheese.classifiers.base import Classifier, StreamingClassifier
from swisscheese.classifiers.registry import get_classifier
from swisscheese.data.prefixes import reply_cuts
from swisscheese.fileio import refuse_nonempty_dir
from swisscheese.models.base import ChatModel
from swisscheese.progress import Progress, step
from swisscheese.rapid_response.forms import AttackForm, analyse
from swisscheese.rapid_response.proliferate import (
    Variant,
    pinned_groups,
    proliferate,
    split_variants,
)
from swisscheese.rapid_response.reports import (
    JailbreakFileError,
    ReportedJailbreak,
    read_jailbreaks,
)
from swisscheese.recipes.base import TrainingSet
from swisscheese.recipes.registry import recipe_of


# ---- figures ------------------------------------------------------------------------------
def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def _figures(clf: Classifier, threshold: float, data: TrainingSet,
             heldout: Sequence[Variant], reports: Sequence[ReportedJailbreak]
             ) -> dict[str, Any]:
    def flags(texts: Sequence[str]) -> np.ndarray:
        return clf.predict_proba(list(texts)) >= threshold if texts else np.zeros(0, dtype=bool)

    harm = [v for v in heldout if v.label == 1]
    ben = [v for v in heldout if v.label == 0]
    hf = flags([v.text for v in harm])
    by_strategy: dict[str, list[bool]] = defaultdict(list)
    for v, f in zip(harm, hf, strict=True):
        by_strategy[v.strategy].append(bool(f))
    asr = _rate(~hf)
    return {
        "threshold": float(threshold),
        "heldout_asr": asr,
        "heldout_asr_by_strategy": {k: float(1 - np.mean(v))
                                    for k, v in sorted(by_strategy.items())},
        "heldout_benign_fpr": _rate(flags([v.text for v in ben])),
        "reported_flagged": _rate(flags([r.prompt for r in reports])),
        "calibration_fpr": _rate(flags(data.calibration)),
        "test_fpr": _rate(flags(data.test_benign)),
        "test_tpr": _rate(flags(data.test_harmful)),
    }


@dataclass
class PatchReport:
    """What `patch_bundle` did and measured; `to_dict` is what `metrics["patch"]` holds."""

    bundle: str
    out: str
    parent_version: int
    version: int
    reports: int
    forms: list[dict[str, Any]]
    variants: dict[str, int]
    before: dict[str, Any]
    after: dict[str, Any]
    output_retrained: bool
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit_output(parent: GuardBundle, data: TrainingSet, reports: Sequence[ReportedJailbreak]
                ) -> tuple[StreamingClassifier, float, dict[str, Any]]:
    """Retrain and recalibrate the streaming output classifier with the reports' replies
    added as harmful replies (with their prefixes, as training adds every reply)."""
    if data.output_builder is None:
        raise BundleError("this bundle's output classifier cannot be rebuilt from its "
                          "record; give the reports without responses")
    out = data.output_builder()
    x, y, cal = out.texts, out.labels, out.calibration
    convs = out.conversations or [None] * len(x)
    cal_convs = out.calibration_conversations or [None] * len(cal)
    for r in reports:
        if r.response:
            cuts = reply_cuts(r.response)
            x += cuts
            y += [1] * len(cuts)
            # A report is one user turn and the reply it drew.
            convs += [[{"role": "user", "content": r.prompt}]] * len(cuts)
    clf = get_classifier(data.output_backend, **data.output_params)
    assert isinstance(clf, StreamingClassifier)
    if clf.output_context == "exchange" and out.conversations is None:
        raise BundleError("this bundle's output classifier is an exchange classifier, but "
                          "its recipe rebuilds no conversations for its replies")
    clf.fit_exchanges(convs, x, y)
    scores = np.array([stream_max_score(clf, t, c, parent.stream_chunk_chars)
                       for c, t in zip(cal_convs, cal, strict=True)])
    t = calibrate(scores, parent.target_fpr, "output")
    return clf, t, {"calibration_fpr": float(np.mean(scores >= t)), "train_n": len(x),
                    "calibration_n": len(cal)}


def check_out(out: str | os.PathLike[str]) -> Path:
    """Refuse an output path that holds anything (before any work is done)."""
    return refuse_nonempty_dir(out, "choose a new --out", error=BundleError)


@dataclass
class _Attack:
    """The reports, their forms, and the variants split into train and held-out."""

    reports: list[ReportedJailbreak]
    forms: list[AttackForm]
    variants: list[Variant]
    train: list[Variant]
    heldout: list[Variant]


def _analyse(reports: list[ReportedJailbreak], data: TrainingSet, llm: ChatModel | None,
             n_requests: int, heldout_share: float, llm_variants: int, seed: int,
             progress: Progress | None) -> _Attack:
    known = [t for _, t in data.harmful_pool]
    forms = []
    for i, r in enumerate(reports):
        step(progress, "analyse", i, len(reports))
        forms.append(analyse(r.prompt, data.vocabulary, known))
    step(progress, "analyse", len(reports), len(reports))
    variants = proliferate(reports, forms, data, n_requests, llm, llm_variants, seed, progress)
    train_v, held_v = split_variants(variants, pinned_groups(reports, forms, data),
                                     heldout_share, seed)
    if not any(v.label == 1 for v in held_v):
        raise ValueError("no held-out variants to measure the patch on: the reports' "
                         "variants fall in fewer than two payload groups; give more reports "
                         "or a bundle whose data has more requests")
    return _Attack(reports, forms, variants, train_v, held_v)


def _report(bdir: Path, out_dir: Path, parent: GuardBundle, a: _Attack,
            figures: tuple[dict[str, Any], dict[str, Any]], output_retrained: bool,
            settings: dict[str, Any]) -> PatchReport:
    return PatchReport(
        bundle=str(bdir), out=str(out_dir), parent_version=parent.version,
        version=parent.version + 1, reports=len(a.reports),
        forms=[{"line": r.line, "form": f.name, "prefix": f.prefix, "stack": list(f.stack),
                "payload_found": f.known} for r, f in zip(a.reports, a.forms, strict=True)],
        variants={"total": len(a.variants), "train": len(a.train), "heldout": len(a.heldout),
                  "heldout_harmful": sum(v.label for v in a.heldout),
                  "heldout_benign": sum(1 - v.label for v in a.heldout),
                  "train_groups": len({v.group for v in a.train}),
                  "heldout_groups": len({v.group for v in a.heldout})},
        before=figures[0], after=figures[1], output_retrained=output_retrained,
        settings=settings)


def _notes(parent: GuardBundle, bdir: Path, a: _Attack, output_retrained: bool) -> str:
    attack = ", ".join(sorted({f.name for f in a.forms}))
    return (f"rapid response patch of v{parent.version} ({bdir}) against {len(a.reports)} "
            f"reported jailbreak(s), form {attack}; {len(a.train)} variants trained, "
            f"{len(a.heldout)} held out"
            + ("; output classifier retrained on the reported responses"
               if output_retrained else "; output classifier unchanged"))


def patch_bundle(
    bundle_dir: str | os.PathLike[str],
    jailbreaks: str | os.PathLike[str] | Sequence[ReportedJailbreak],
    out: str | os.PathLike[str],
    *,
    llm: ChatModel | None = None,
    seed: int = 0,
    n_requests: int = 200,
    heldout_share: float = 0.3,
    llm_variants: int = 8,
    data_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> PatchReport:
    """Patch `bundle_dir` against the reported `jailbreaks` and write the next version to
    `out` (see the module docstring). `data_dir` is where the bundle's recipe finds its
    data (default: what its training record says). Everything is checked (the output
    path, the reports, the bundle, its data) before anything is fitted; nothing is written
    on failure."""
    bdir = Path(bundle_dir)
    out_dir = check_out(out)
    reports = (read_jailbreaks(jailbreaks) if isinstance(jailbreaks, str | os.PathLike)
               else list(jailbreaks))
    if not reports:
        raise JailbreakFileError("no jailbreaks given")
    if n_requests < 2:
        raise ValueError(f"n_requests must be >= 2, got {n_requests}")
    parent = load_bundle(bdir)
    step(progress, "read training data", 0, 1)
    data = recipe_of(parent, bdir).training_set(parent, bdir, data_dir)
    step(progress, "read training data", 1, 1)
    a = _analyse(reports, data, llm, n_requests, heldout_share, llm_variants, seed, progress)
    before = _figures(parent.input, parent.thresholds["input"], data, a.heldout, reports)
    step(progress, "fit and calibrate", 0, 1)
    texts = data.texts + [r.prompt for r in reports] + [v.text for v in a.train]
    labels = data.labels + [1] * len(reports) + [v.label for v in a.train]
    clf = get_classifier(data.backend, **{"seed": data.seed, **data.input_params})
    clf.fit(texts, labels)
    cal_scores = clf.predict_proba(data.calibration)
    t_in = calibrate(cal_scores, parent.target_fpr, "input")
    output, t_out = parent.output, parent.thresholds["output"]
    out_metrics: dict[str, Any] | None = None
    if any(r.response for r in reports):
        output, t_out, out_metrics = _fit_output(parent, data, reports)
    step(progress, "fit and calibrate", 1, 1)
    settings = {"seed": seed, "n_requests": n_requests, "heldout_share": heldout_share,
                "llm": getattr(llm, "name", None) if llm is not None else None,
                "llm_variants": llm_variants if llm is not None else 0, **data.describe}
    report = _report(bdir, out_dir, parent, a,
                     (before, _figures(clf, t_in, data, a.heldout, reports)),
                     out_metrics is not None, settings)
    metrics = json.loads(json.dumps(parent.metrics))
    metrics["input"] = {**metrics.get("input", {}),
                        "calibration_fpr": float(np.mean(cal_scores >= t_in)),
                        "calibration_n": len(data.calibration), "train_n": len(texts)}
    if out_metrics is not None:
        metrics["output"] = {**metrics.get("output", {}), **out_metrics}
    metrics["patch"] = report.to_dict()
    new = GuardBundle(
        version=parent.version + 1, constitution=parent.constitution, input=clf, output=output,
        thresholds={"input": t_in, "output": t_out}, target_fpr=parent.target_fpr,
        training=parent.training.relinked(out_dir), metrics=metrics,
        parent_version=parent.version, notes=_notes(parent, bdir, a, out_metrics is not None),
        stream_chunk_chars=parent.stream_chunk_chars,
        # The category scorer names kinds of harm, not attacks: it carries over unchanged.
        categories=parent.categories, category_thresholds=dict(parent.category_thresholds))
    step(progress, "save", 0, 1)
    save_bundle(new, out_dir)
    step(progress, "save", 1, 1)
    return report
