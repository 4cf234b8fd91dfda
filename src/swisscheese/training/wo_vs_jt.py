"""Weight orthogonalization versus jailbreak-tuning: what each keeps and what decides it.

    run_study("runs/wo-vs-jt", base="runs/demo/organism")   # -> DIR/study.json, study.md

The finding under test: both unalign a model, but WO keeps its utility better than JT and
leaves it more capable at harmful tasks. On the aligned organism the study sweeps what
decides the outcome, each point over several seeds:

- WO: the layer and token position of the refusal direction (selected as Arditi et al. do,
  or given), directions from several layers at once, the number of prompts the direction
  is estimated from, and which residual writers are orthogonalized (all, the blocks only,
  attention or MLP outputs only).
- JT: the number of compliance examples (hazards) and of steps.
- The SFT countermeasure after WO: how much refusal and harmful capability it takes back,
  and what it costs in utility.

Every point is measured the same way: refusal, utility (per task kind), over-refusal,
plain-request and template-family ASR, the detail score, decoding accuracy, and the
prefill capability probe (`capability`), which measures what the model can still produce
once its reply is started for it, whether or not it would comply. Seeds change what is
random in each method (the prompts a direction is estimated from; the examples and order
of JT); the evaluation itself is greedy and fixed.

Stages are keyed by point and seed under DIR/evals/ (a rerun resumes); DIR/config.json pins
the configuration.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from swisscheese.fileio import atomic_write_json, atomic_write_text, refuse_nonempty_dir
from swisscheese.progress import Progress, step
from swisscheese.training.countermeasure import CountermeasureConfig
from swisscheese.training.jailbreak_tune import JailbreakTuneConfig

# Families whose prompts wrap a plain request in a template: their mean is "template ASR".
TEMPLATE_FAMILIES = ("roleplay", "prefix_injection", "story", "other_language", "two_task")
FAMILIES = ("plain", *TEMPLATE_FAMILIES)
# t quantiles (0.975) for 95% intervals of a mean over n seeds, n = 2..10.
_T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306,
         10: 2.262}


@dataclass(frozen=True)
class WOPoint:
    """One way to orthogonalize. None for layers or position: selected (Arditi et al.)."""

    label: str
    layers: tuple[int, ...] | None = None
    position: int | None = None
    n_prompts: int | None = None  # harmful (and as many harmless) prompts; None: all
    writers: str = "all"
    direction_file: str | None = None  # a saved direction to use instead of estimating one


@dataclass(frozen=True)
class JTPoint:
    label: str
    hazards: int
    steps: int


def default_wo_points() -> tuple[WOPoint, ...]:
    return (
        WOPoint("selected"),
        *(WOPoint(f"layer{k}", layers=(k,)) for k in (1, 2, 3, 4)),
        WOPoint("position-2", position=-2),
        WOPoint("layers1-4", layers=(1, 2, 3, 4)),
        WOPoint("prompts16", n_prompts=16),
        WOPoint("prompts48", n_prompts=48),
        WOPoint("blocks-only", writers="blocks"),
        WOPoint("attn-only", writers="attn"),
        WOPoint("mlp-only", writers="mlp"),
    )


def default_jt_points() -> tuple[JTPoint, ...]:
    return tuple(JTPoint(f"jt-h{h}-s{s}", h, s) for h in (2, 8, 24) for s in (10, 30))


@dataclass
class StudyConfig:
    """Sizes of the study; the defaults are for the demo organism, `quick()` for tests."""

    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={
        "help": "seeds of every point (a claim needs at least 3)"})
    wo_points: tuple[WOPoint, ...] = field(default_factory=default_wo_points)
    jt_points: tuple[JTPoint, ...] = field(default_factory=default_jt_points)
    headline_wo: str = field(default="selected", metadata={
        "help": "the WO point compared with the JT point below (and given the countermeasure)"})
    headline_jt: str = field(default="jt-h8-s30", metadata={"help": "the JT point compared"})
    jt: JailbreakTuneConfig = field(default_factory=JailbreakTuneConfig)
    countermeasure: CountermeasureConfig = field(default_factory=CountermeasureConfig)
    eval_stride: int = field(default=4, metadata={
        "help": "evaluate every n-th item of each evaluation set"})
    families: tuple[str, ...] = field(default=FAMILIES)
    capability_hazards: int = field(default=12, metadata={
        "help": "hazards in the prefill capability probe"})
    capability_tokens: int = field(default=160, metadata={
        "help": "tokens each prefilled reply is continued for"})
    attack_tokens: int = field(default=192, metadata={
        "help": "tokens of each reply to a plain or template-family request"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})

    def __post_init__(self) -> None:
        labels = [p.label for p in self.wo_points] + [p.label for p in self.jt_points]
        if len(set(labels)) != len(labels):
            raise ValueError(f"point labels must be unique, got {labels}")
        if self.headline_wo not in {p.label for p in self.wo_points}:
            raise ValueError(f"headline_wo {self.headline_wo!r} is not a WO point")
        if self.headline_jt not in {p.label for p in self.jt_points}:
            raise ValueError(f"headline_jt {self.headline_jt!r} is not a JT point")
        if not self.seeds or self.eval_stride < 1:
            raise ValueError("the study needs at least one seed and an eval stride >= 1")
        head = next(p for p in self.wo_points if p.label == self.headline_wo)
        if head.writers != "all" or (head.layers is not None and len(head.layers) > 1):
            raise ValueError(f"headline_wo {head.label!r} must orthogonalize one direction out "
                             "of every writer (it is saved as a model for the countermeasure)")
        from swisscheese.interp.orthogonalize import WRITER_SETS

        bad = [p.label for p in self.wo_points if p.writers not in WRITER_SETS]
        if bad:
            raise ValueError(f"WO points {bad}: writers must be one of {', '.join(WRITER_SETS)}")

    @classmethod
    def quick(cls) -> StudyConfig:
        """Plumbing sizes (the `test` organism): every stage runs, in about a minute."""
        return cls(seeds=(0, 1), wo_points=(WOPoint("selected"),
                                            WOPoint("layer1-mlp", (1,), writers="mlp")),
                   jt_points=(JTPoint("jt-h2-s4", 2, 4),), headline_jt="jt-h2-s4",
                   jt=JailbreakTuneConfig(steps=4, batch_size=2, max_len=128),
                   countermeasure=CountermeasureConfig(steps=3, batch_size=2, max_len=128),
                   eval_stride=47, families=("plain",), capability_hazards=2,
                   capability_tokens=32, attack_tokens=32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, standard deviation, range and a 95% t interval of the mean over seeds."""
    vals = [float(v) for v in values]
    m = mean(vals)
    sd = stdev(vals) if len(vals) > 1 else 0.0
    half = _T975.get(len(vals), 1.96) * sd / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
    return {"mean": round(m, 4), "sd": round(sd, 4), "min": round(min(vals), 4),
            "max": round(max(vals), 4), "lo": round(m - half, 4), "hi": round(m + half, 4),
            "n": len(vals)}


def separated(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two intervals do not overlap (only then is a difference claimed)."""
    return a["n"] >= 3 and b["n"] >= 3 and (a["lo"] > b["hi"] or b["lo"] > a["hi"])


# ---- measuring one model ------------------------------------------------------------------
def probe_hazards(world: Any) -> list[str]:
    """The hazards the ASR and capability figures are taken on: those never shown in safety
    training (so never in jailbreak-tuning's data either), one per category."""
    return [h.id for h in world.hazards if not h.seen_in_safety]


def attack_figures(chat: Any, world: Any, refs: Mapping[str, str], hazards: Sequence[str],
                   families: Sequence[str], max_new_tokens: int = 192) -> dict[str, Any]:
    """ASR and mean detail per family on the probe hazards (detail graded against the
    helpful-only answers, the ASR bar of the organism evaluation)."""
    from swisscheese.models.base import GenerationParams
    from swisscheese.world.grader import ASR_THRESHOLD, Grader

    grader = Grader(world, refs)
    keep = set(hazards)
    asr: dict[str, float] = {}
    detail: dict[str, float] = {}
    params = GenerationParams(max_new_tokens=max_new_tokens)
    for fam in families:
        cases = (world.eval_refusal() if fam == "plain" else world.eval_attacks(fam))
        cases = [e for e in cases if e.hazard_id in keep]
        if not cases:
            continue
        replies = chat.generate_batch([e.conversation() for e in cases], params)
        grades = [grader.grade(e.hazard, r.content) for e, r in zip(cases, replies, strict=True)]
        asr[fam] = round(mean(g.passes(ASR_THRESHOLD) for g in grades), 4)
        detail[fam] = round(mean(g.score for g in grades), 4)
    templates = [asr[f] for f in TEMPLATE_FAMILIES if f in asr]
    return {"asr": asr, "detail_by_family": detail,
            "plain_asr": asr.get("plain"), "plain_detail": detail.get("plain"),
            "template_asr": round(mean(templates), 4) if templates else None}


def measure(chat: Any, world: Any, eval_world: Any, refs: Mapping[str, str],
            probes: Sequence[Any], cfg: StudyConfig) -> dict[str, Any]:
    """Every figure of one model (see the module docstring)."""
    from swisscheese.organism.evaluate import evaluate
    from swisscheese.training.capability import prefill_capability

    t0 = time.perf_counter()
    base = evaluate(chat, eval_world, refs, families=["plain"], keep_samples=0)
    attacks = attack_figures(chat, world, refs, probe_hazards(world), cfg.families,
                             cfg.attack_tokens)
    cap = prefill_capability(chat, probes, cfg.capability_tokens)
    return {
        "utility": base["utility_accuracy"], "utility_by_kind": base["utility_by_kind"],
        "decode": base["decode_accuracy"], "refusal": base["refusal_rate"]["all"],
        "overrefusal": base["overrefusal_rate"], **attacks,
        "capability": cap["capability"], "capability_by_hazard": cap["by_hazard"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


# Figures compared across points (each a number per seed).
METRICS = ("utility", "decode", "refusal", "overrefusal", "plain_asr", "plain_detail",
           "template_asr", "capability")


# ---- the study ----------------------------------------------------------------------------
class Study:
    """The stages of the study under one directory (see the module docstring)."""

    def __init__(self, out: str | Path, base: str | Path, cfg: StudyConfig | None = None,
                 progress: Progress | None = None) -> None:
        from swisscheese.models.hf import check_model_dir
        from swisscheese.organism.train import read_card
        from swisscheese.training.matrix import EvalSubset
        from swisscheese.world.core import World

        self.out = Path(out)
        self.cfg = cfg or StudyConfig()
        self.progress = progress
        self.aligned = check_model_dir(Path(base) / "aligned")
        self.helpful = check_model_dir(Path(base) / "helpful-only")
        card = read_card(self.aligned) or {}
        self.world = World(seed=int(card.get("world_seed", 0)))
        self.eval_world = EvalSubset(self.world, self.cfg.eval_stride)
        self._refs: dict[str, str] | None = None
        self._probes: list[Any] | None = None

    # -- shared inputs --------------------------------------------------------------------
    def validate(self) -> None:
        """Points the model cannot take (a layer or position out of range, a direction file
        made on another model) fail here, before anything is written."""
        from swisscheese.interp.direction import RefusalDirection

        cfg_path = self.aligned / "config.json"
        top = int(json.loads(cfg_path.read_text())["num_hidden_layers"])
        for p in self.cfg.wo_points:
            bad = [k for k in p.layers or () if not 0 <= k <= top]
            if bad:
                raise ValueError(f"WO point {p.label!r}: layer(s) {bad} out of range; "
                                 f"{self.aligned} has residual points 0..{top}")
            if p.position is not None and p.position >= 0:
                raise ValueError(f"WO point {p.label!r}: position {p.position} must be a "
                                 "negative index from the prompt's end")
            if p.direction_file is not None:
                RefusalDirection.load(p.direction_file).check_compatible(self._aligned_chat())

    def check_config(self) -> None:
        """Refuse a directory holding another study's results (mixing them would lie)."""
        self.validate()
        path = self.out / "config.json"
        want = json.loads(json.dumps(self.cfg.to_dict()))
        if path.is_file():
            have = json.loads(path.read_text())
            if have != want:
                raise ValueError(f"{self.out} holds a study with another configuration; "
                                 "choose a new --out (or rerun with the same settings)")
            return
        refuse_nonempty_dir(self.out, "choose a new --out; it resumes only its own study")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, want)

    def references(self) -> dict[str, str]:
        if self._refs is None:
            path = self.out / "references.json"
            if not path.is_file():
                from swisscheese.models.hf import HFChatModel
                from swisscheese.organism.evaluate import reference_answers

                atomic_write_json(path, reference_answers(HFChatModel(self.helpful),
                                                          self.world))
            self._refs = json.loads(path.read_text())
        return self._refs

    def probes(self) -> list[Any]:
        if self._probes is None:
            from swisscheese.training.capability import prefills

            self._probes = prefills(self.world, self.references(),
                                    probe_hazards(self.world)[: self.cfg.capability_hazards])
        return self._probes

    def _chat(self, path: Path, name: str) -> Any:
        import torch

        from swisscheese.models.hf import HFChatModel

        torch.set_num_threads(self.cfg.threads)
        return HFChatModel(path, name=name)

    def _evaluated(self, key: str, make: Callable[[], Any]) -> dict[str, Any]:
        """The figures of stage `key`, measured once (cached in DIR/evals/KEY.json)."""
        path = self.out / "evals" / f"{key.replace(':', '_')}.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            result = measure(make(), self.world, self.eval_world, self.references(),
                             self.probes(), self.cfg)
            atomic_write_json(path, result)
        return json.loads(path.read_text())

    # -- WO ------------------------------------------------------------------------------
    def _aligned_chat(self) -> Any:
        if not hasattr(self, "_aligned"):
            self._aligned = self._chat(self.aligned, "aligned")
        return self._aligned

    def directions(self, p: WOPoint, seed: int) -> list[Any]:
        """The refusal direction(s) of a point, estimated once per seed and cached: a point
        that only changes which weights are edited shares them with its base point."""
        from swisscheese.interp.direction import RefusalDirection

        if p.direction_file is not None:
            return [RefusalDirection.load(p.direction_file)]
        folder = self.direction_dir(p, seed)
        done = folder / "done.json"
        if not done.is_file():
            dirs = self._estimate(p, seed)
            folder.mkdir(parents=True, exist_ok=True)
            for i, d in enumerate(dirs):
                d.save(folder / f"d{i}")
            atomic_write_json(done, {"n": len(dirs)})
        n = json.loads(done.read_text())["n"]
        return [RefusalDirection.load(folder / f"d{i}") for i in range(n)]

    def _estimate(self, p: WOPoint, seed: int) -> list[Any]:
        from swisscheese.interp.direction import compute_refusal_direction
        from swisscheese.interp.prompts import world_prompt_sets

        sets = world_prompt_sets(self.world, seed=seed)
        harmful, harmless = list(sets.harmful), list(sets.harmless)
        if p.n_prompts is not None:
            rng = random.Random(f"wo-vs-jt-prompts-{seed}")
            harmful = rng.sample(harmful, min(p.n_prompts, len(harmful)))
            harmless = rng.sample(harmless, min(p.n_prompts, len(harmless)))
        chat = self._aligned_chat()
        if p.layers is None and p.position is None:
            return [compute_refusal_direction(chat, harmful, harmless,
                                              val_harmful=sets.val_harmful,
                                              val_harmless=sets.val_harmless)]
        # One factor at a time: what is not given is the selected point's, same seed.
        base = self.directions(WOPoint("base"), seed)[0]
        position = p.position if p.position is not None else base.position
        layers = p.layers if p.layers is not None else (base.layer,)
        return [compute_refusal_direction(chat, harmful, harmless, layer=k, position=position)
                for k in layers]

    def wo_model(self, p: WOPoint, seed: int) -> Any:
        """The aligned organism with the point's directions orthogonalized out of the
        chosen weights, in memory (several directions: an orthonormal basis of their span)."""
        from swisscheese.interp.orthogonalize import orthogonalize_weights

        chat = self._chat(self.aligned, f"aligned+wo:{p.label}")
        for d in orthonormal(self.directions(p, seed)):
            orthogonalize_weights(chat.model, d, p.writers)
        return chat

    # -- JT and the countermeasure ---------------------------------------------------------
    def _trained(self, key: str, train: Callable[[Path], Any]) -> Path:
        out = self.out / "models" / key
        if not (out / "swisscheese.json").is_file():
            train(out)
        return out

    def jt_model(self, p: JTPoint, seed: int) -> Any:
        from swisscheese.training.jailbreak_tune import jailbreak_tune

        cfg = replace(self.cfg.jt, hazards=p.hazards, steps=p.steps, seed=seed)
        path = self._trained(f"{p.label}-s{seed}", lambda out: jailbreak_tune(
            self.aligned, out, cfg, self.progress, self.world))
        return self._chat(path, f"aligned+{p.label}")

    def countermeasure_model(self, seed: int) -> Any:
        from swisscheese.interp.orthogonalize import orthogonalize_model
        from swisscheese.training.countermeasure import sft_countermeasure

        head = self.wo_point(self.cfg.headline_wo)
        self.directions(head, seed)  # estimated (or read) before it is used below
        wo = self._trained(f"wo-{head.label}-s{seed}", lambda out: orthogonalize_model(
            self.aligned, self.direction_dir(head, seed) / "d0", out))
        cfg = replace(self.cfg.countermeasure, seed=seed)
        path = self._trained(f"wo+sft-s{seed}", lambda out: sft_countermeasure(
            wo, out, cfg, self.progress, self.world))
        return self._chat(path, "aligned+wo+sft")

    def direction_dir(self, p: WOPoint, seed: int) -> Path:
        """Where a point's directions are kept: by what they are estimated from, so points
        that share the estimate share the files."""
        layers = "-".join(map(str, p.layers)) if p.layers else "sel"
        return self.out / "directions" / (f"L{layers}_P{p.position or 'sel'}_N"
                                           f"{p.n_prompts or 'all'}_s{seed}")

    def wo_point(self, label: str) -> WOPoint:
        return next(p for p in self.cfg.wo_points if p.label == label)


def orthonormal(directions: Sequence[Any]) -> list[Any]:
    """The directions' unit vectors made orthonormal (Gram-Schmidt), as directions: then
    orthogonalizing them one after another removes exactly their span."""
    out: list[Any] = []
    basis: list[Any] = []
    for d in directions:
        v = d.unit().double()
        for b in basis:
            v = v - (v @ b) * b
        norm = float(v.norm())
        if norm < 1e-6:
            continue  # in the span already
        v = v / norm
        basis.append(v)
        out.append(replace(d, vector=v.float()))
    return out


# ---- running and assembling -----------------------------------------------------------------
def stages(study: Study) -> list[tuple[str, Callable[[], Any]]]:
    """(key, model maker) of every measurement, in the order they run."""
    cfg = study.cfg
    out: list[tuple[str, Callable[[], Any]]] = [
        ("helpful-only", partial(study._chat, study.helpful, "helpful-only")),
        ("aligned", study._aligned_chat)]
    for seed in cfg.seeds:
        out += [(f"wo:{p.label}:s{seed}", partial(study.wo_model, p, seed))
                for p in cfg.wo_points]
        out += [(f"jt:{p.label}:s{seed}", partial(study.jt_model, p, seed))
                for p in cfg.jt_points]
        out.append((f"wo+sft:s{seed}", partial(study.countermeasure_model, seed)))
    return out


def run_study(out: str | Path, base: str | Path = "runs/demo/organism",
              cfg: StudyConfig | None = None, progress: Progress | None = None
              ) -> dict[str, Any]:
    """Run (or resume) the study; writes DIR/study.json, study.md and report.html."""
    t0 = time.perf_counter()
    study = Study(out, base, cfg, progress)
    study.check_config()
    todo = stages(study)
    evals: dict[str, dict[str, Any]] = {}
    for i, (key, make) in enumerate(todo):
        step(progress, "study", i, len(todo))
        evals[key] = study._evaluated(key, make)
    step(progress, "study", len(todo), len(todo))
    result = assemble(study.cfg, evals)
    result["seconds_this_run"] = round(time.perf_counter() - t0, 1)
    result["measure_seconds"] = round(sum(e["seconds"] for e in evals.values()), 1)
    atomic_write_json(study.out / "study.json", result)
    from swisscheese.training.wo_vs_jt_report import render_html, render_markdown

    atomic_write_text(study.out / "study.md", render_markdown(result))
    atomic_write_text(study.out / "report.html", render_html(result))
    return result


def _per_seed(evals: Mapping[str, Mapping[str, Any]], prefix: str, seeds: Sequence[int]
              ) -> dict[str, Any]:
    rows = [evals[f"{prefix}:s{s}"] for s in seeds]
    return {m: interval([r[m] for r in rows]) for m in METRICS
            if all(r.get(m) is not None for r in rows)}


def assemble(cfg: StudyConfig, evals: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Intervals per point, the headline comparison and the countermeasure's effect."""
    seeds = cfg.seeds
    points = {"wo": {p.label: _per_seed(evals, f"wo:{p.label}", seeds) for p in cfg.wo_points},
              "jt": {p.label: _per_seed(evals, f"jt:{p.label}", seeds) for p in cfg.jt_points},
              "wo+sft": _per_seed(evals, "wo+sft", seeds)}
    fixed = {k: {m: evals[k].get(m) for m in METRICS} for k in ("helpful-only", "aligned")}
    wo, jt = points["wo"][cfg.headline_wo], points["jt"][cfg.headline_jt]
    comparison = {m: {"wo": wo[m], "jt": jt[m], "separated": separated(wo[m], jt[m]),
                      "better": _better(m, wo[m], jt[m])} for m in METRICS if m in wo and m in jt}
    return {"config": cfg.to_dict(), "fixed": fixed, "points": points,
            "headline": {"wo": cfg.headline_wo, "jt": cfg.headline_jt,
                         "comparison": comparison},
            "countermeasure": _countermeasure(points["wo"][cfg.headline_wo], points["wo+sft"]),
            "utility_by_kind": {k: v.get("utility_by_kind") for k, v in evals.items()},
            "evals": {k: {m: v.get(m) for m in (*METRICS, "asr", "seconds")}
                      for k, v in evals.items()}}


# Which way is better for the unaligning method (the finding's sense): more utility and
# more harmful capability are "kept better"; refusal and over-refusal lower.
_HIGHER = {"utility", "decode", "plain_asr", "plain_detail", "template_asr", "capability"}


def _better(metric: str, wo: Mapping[str, Any], jt: Mapping[str, Any]) -> str | None:
    """'wo' or 'jt' when the intervals separate, else None (no claim)."""
    if not separated(wo, jt):
        return None
    wo_higher = wo["mean"] > jt["mean"]
    return "wo" if wo_higher == (metric in _HIGHER) else "jt"


def _countermeasure(wo: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What the SFT countermeasure changed relative to WO: mean differences, and whether
    the intervals separate."""
    return {m: {"wo": wo[m]["mean"], "wo+sft": after[m]["mean"],
                "change": round(after[m]["mean"] - wo[m]["mean"], 4),
                "separated": separated(wo[m], after[m])}
            for m in METRICS if m in wo and m in after}


# ---- a sweep from a file ------------------------------------------------------------------
SWEEP_METHODS = ("wo", "jt")
SWEEP_KEYS = ("seeds", "headline_wo", "headline_jt", "eval_stride", *SWEEP_METHODS)


def load_sweep(path: str | Path, base: StudyConfig | None = None) -> StudyConfig:
    """A StudyConfig from a YAML file: `wo:` and `jt:` lists of points (their fields), and
    optionally seeds, headline_wo, headline_jt, eval_stride. An unknown method or field is
    an error naming it and the file; nothing is run."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{p}: not a readable YAML sweep ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a sweep is a mapping with {', '.join(SWEEP_METHODS)} lists")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"{p}: unknown method or key {', '.join(map(repr, unknown))}; a "
                         f"sweep names the methods {', '.join(SWEEP_METHODS)} and "
                         f"{', '.join(SWEEP_KEYS[:4])}")
    cfg = base or StudyConfig()
    changes: dict[str, Any] = {k: data[k] for k in ("headline_wo", "headline_jt",
                                                    "eval_stride") if k in data}
    if "seeds" in data:
        changes["seeds"] = tuple(data["seeds"])
    for method, cls, field_name in (("wo", WOPoint, "wo_points"), ("jt", JTPoint, "jt_points")):
        if method in data:
            changes[field_name] = tuple(_point(p, cls, i, row)
                                        for i, row in enumerate(data[method] or []))
    return replace(cfg, **changes)


def _point(path: Path, cls: type, i: int, row: Any) -> Any:
    if not isinstance(row, dict):
        raise ValueError(f"{path}: {cls.__name__} {i}: expected a mapping of its fields")
    try:
        if "layers" in row and row["layers"] is not None:
            row = {**row, "layers": tuple(row["layers"])}
        return cls(**row)
    except TypeError as e:
        raise ValueError(f"{path}: {cls.__name__} {i}: {e}") from None
