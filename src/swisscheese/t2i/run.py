"""A whole T2I red-team run: loops, re-renders, transfer, judge check, guard, summary.

    run = T2IRun(config, "runs/t2i-red")
    summary = run.run()            # rerun after a crash: it resumes from RUN/store.sqlite

Each stage writes its results to the store keyed by ids and is skipped when they are
there; `summary.json` and `details.json` are written last, atomically.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swisscheese.fileio import atomic_write_json
from swisscheese.store.t2i import T2IStore
from swisscheese.t2i import measures
from swisscheese.t2i.base import T2IError
from swisscheese.t2i.config import T2IRunConfig, validate
from swisscheese.t2i.loop import Components, LoopRunner, stable_int
from swisscheese.t2i.registry import (
    GENERATORS,
    IMAGE_JUDGES,
    PROMPT_FILTERS,
    WRITERS,
    T2IContext,
    build,
    spec_parts,
)
from swisscheese.t2i.world import VisualWorld

Progress = Callable[[str, int, int, dict | None], None]
REPORT_UPSCALE = 6


def plugin_label(spec: Any, kind: str, taken: Any = ()) -> str:
    """A display name: the plugin's name, with its parameters when that name is taken
    already (two classifier filters with different seeds)."""
    name, params = spec_parts(spec, kind)
    if name not in taken or not params:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"


def build_named(registry: Any, specs: list[Any], ctx: T2IContext, kind: str,
                taken: Any = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        label = plugin_label(spec, kind, {*taken, *out})
        if label in out or label in taken:
            raise T2IError(f"{kind} {label!r} is listed twice")
        out[label] = build(registry, spec, ctx)
    return out


def png_bytes(image: Any) -> bytes:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class T2IRun:
    def __init__(self, cfg: T2IRunConfig, out: str | Path,
                 progress: Progress | None = None) -> None:
        validate(cfg)
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        self.world = VisualWorld(cfg.world_seed)
        cats = [c.id for c in self.world.categories]
        bad = [c for c in cfg.categories or [] if c not in cats]
        if bad:
            raise T2IError(f"unknown categories {', '.join(bad)}; the world has "
                           f"{', '.join(cats)}")
        self.categories = list(cfg.categories or cats)
        if cfg.organism is not None and not Path(cfg.organism).is_dir():
            raise T2IError(f"{cfg.organism}: organism directory not found")

    # ---- components ----------------------------------------------------------------------
    def _context(self, organism: str | None) -> T2IContext:
        return T2IContext(self.world, Path(organism) if organism else None,
                          self.out / "cache", self.cfg.seed)

    def build_components(self) -> tuple[Components, dict[str, Any], dict[str, Any]]:
        """Everything is built (and every endpoint checked) before the store is opened,
        so a bad plugin or an unreachable endpoint writes nothing."""
        ctx = self._context(self.cfg.organism)
        judges = build_named(IMAGE_JUDGES, self.cfg.judges, ctx, "judge")
        held_j = build_named(IMAGE_JUDGES, self.cfg.heldout_judges, ctx, "judge", judges)
        filters = build_named(PROMPT_FILTERS, self.cfg.filters, ctx, "filter")
        held_f = build_named(PROMPT_FILTERS, self.cfg.heldout_filters, ctx, "filter", filters)
        comps = Components(self.world, build(WRITERS, self.cfg.writer, ctx),
                           build(GENERATORS, self.cfg.generator, ctx), judges, filters)
        return comps, held_j, held_f

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        comps, held_j, held_f = self.build_components()
        with T2IStore(self.out / "store.sqlite") as store:
            resumed = store.open_run(self.cfg.name, self.cfg.to_dict(), self.cfg.config_hash())
            runner = LoopRunner(comps, self.cfg, store, self.cfg.name, self.progress)
            for loop in self.cfg.loops:
                for cat in self.categories:
                    runner.run(loop, cat)
            self._eval_stage(store, comps, held_j)
            self._grid_stage(store, comps)
            self._transfer_stage(store, comps)
            self._judge_stage(store, comps)
            self._guard_stage(store, comps)
            summary, details = self.summarize(store, comps, held_j, held_f)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summary["resumed"] = resumed
        atomic_write_json(self.out / "details.json", details)
        atomic_write_json(self.out / "summary.json", summary)
        return summary

    def _records(self, store: T2IStore, loop: str, cat: str) -> list[Any]:
        return store.queries(self.cfg.name, loop, cat)

    def _eval_stage(self, store: T2IStore, comps: Components, held_j: dict[str, Any]) -> None:
        """Re-render a sample of each loop's safe prompts, and its successes, k times."""
        done = store.stage(self.cfg.name, "eval")
        judges = {**comps.judges, **held_j}
        for loop in self.cfg.loops:
            for cat in self.categories:
                key = f"{loop}/{cat}"
                if key in done:
                    continue
                recs = self._records(store, loop, cat)
                rng = random.Random(stable_int(self.cfg.seed, "eval", key))
                safe = measures.safe_prompts(recs)
                wins = measures.successes(recs)
                s_safe = set(rng.sample(safe, min(len(safe), self.cfg.eval_prompts)))
                s_win = set(rng.sample(wins, min(len(wins), self.cfg.eval_prompts)))
                prompts = sorted(s_safe | s_win)
                pics = comps.generator.generate(prompts, self.cfg.k, seed=self.cfg.seed + 1)
                flat = [im for g in pics for im in g]
                fp = [p for p in prompts for _ in range(self.cfg.k)]
                flags = {n: [v.flagged(j.threshold, cat) for v in j.judge_batch(flat, fp)]
                         for n, j in judges.items()}
                k = self.cfg.k
                entries = [{"prompt": p, "in_safe_sample": p in s_safe,
                            "in_loop_success": p in s_win,
                            "flags": {n: f[i * k:(i + 1) * k] for n, f in flags.items()}}
                           for i, p in enumerate(prompts)]
                store.put_stage(self.cfg.name, "eval", {key: entries})
                if self.progress:
                    self.progress("re-render", len(done) + 1,
                                  len(self.cfg.loops) * len(self.categories), None)

    def _grid_stage(self, store: T2IStore, comps: Components) -> None:
        """Images of the successful prompts for the report (closed loop first)."""
        if store.stage(self.cfg.name, "grid"):
            return
        evals = store.stage(self.cfg.name, "eval")
        grid: dict[str, list[str]] = {}
        images: dict[str, bytes] = {}
        for cat in self.categories:
            chosen: list[str] = []
            for loop in self.cfg.loops:
                for e in evals.get(f"{loop}/{cat}", []):
                    if e["in_loop_success"] and e["prompt"] not in chosen and \
                            len(chosen) < self.cfg.grid_prompts:
                        chosen.append(e["prompt"])
            pics = comps.generator.generate(chosen, self.cfg.k, seed=self.cfg.seed + 1)
            for i, group in enumerate(pics):
                for j, im in enumerate(group):
                    images[f"grid/{cat}/{i:03d}/{j}"] = png_bytes(im)
            grid[cat] = chosen
        store.put_images(self.cfg.name, images)
        store.put_stage(self.cfg.name, "grid", {"prompts": grid})

    def _transfer_stage(self, store: T2IStore, comps: Components) -> None:
        if not self.cfg.transfer_organism or store.stage(self.cfg.name, "transfer"):
            return
        from swisscheese.t2i.generators import DiffusersGenerator
        from swisscheese.t2i.judges.cnn import CNNJudge
        from swisscheese.t2i.organism import JUDGE_DIR, read_card

        d = Path(self.cfg.transfer_organism)
        gen = DiffusersGenerator(d, **_generator_params(self.cfg.generator))
        judge = CNNJudge(d / JUDGE_DIR)
        card = read_card(d) or {}
        evals = store.stage(self.cfg.name, "eval")
        out: dict[str, Any] = {"organism": str(d), "world_seed": card.get("world_seed")}
        for key, entries in evals.items():
            cat = key.split("/", 1)[1]
            wins = [e["prompt"] for e in entries if e["in_loop_success"]]
            pics = gen.generate(wins, self.cfg.k, seed=self.cfg.seed + 2)
            hits = [any(v.flagged(judge.threshold, cat) for v in judge.judge_batch(g, [p] * len(g)))
                    for p, g in zip(wins, pics, strict=True)]
            out[key] = {"prompts": len(wins), "transferred": sum(hits)}
        store.put_stage(self.cfg.name, "transfer", {"result": out})

    def _judge_stage(self, store: T2IStore, comps: Components) -> None:
        """The CNN judge against the oracle on this generator's images (organism only)."""
        if store.stage(self.cfg.name, "judge") or "cnn" not in comps.judges:
            return
        from swisscheese.t2i.evaluate import evaluate_judge

        res = evaluate_judge(comps.judges["cnn"], comps.generator, self.world,
                             n=self.cfg.judge_images,
                             seed=self.cfg.seed)
        store.put_stage(self.cfg.name, "judge", {"result": res})

    def _guard_stage(self, store: T2IStore, comps: Components) -> None:
        if store.stage(self.cfg.name, "guard"):
            return
        from swisscheese.t2i.guard import T2IGuard, evaluate_guard

        ctx = self._context(self.cfg.organism)
        g = self.cfg.guard
        guard = T2IGuard(comps.generator,
                         build_named(PROMPT_FILTERS, g.prompt_filters, ctx, "filter"),
                         build_named(IMAGE_JUDGES, g.image_checkers, ctx, "judge"),
                         g.checker_threshold)
        attack: list[str] = []
        for loop in self.cfg.loops:
            for cat in self.categories:
                attack += [p for p in measures.successes(self._records(store, loop, cat))
                           if p not in attack]
        rng = random.Random(stable_int(self.cfg.seed, "guard"))
        attack = rng.sample(attack, min(len(attack), 300))
        benign = self.world.clean_captions(int(g.benign_prompts * 0.8), rng)
        benign += [self.world.caption(self.world.random_scene(rng), rng,
                                      emblem=rng.choice(rng.choice(self.world.lookalikes).names))
                   for _ in range(g.benign_prompts - len(benign))]
        res = evaluate_guard(guard, attack, benign, self.cfg.k, seed=self.cfg.seed + 3)
        store.put_stage(self.cfg.name, "guard", {"result": res})

    # ---- summary -------------------------------------------------------------------------
    def summarize(self, store: T2IStore, comps: Components, held_j: dict[str, Any],
                  held_f: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        from swisscheese.t2i.summary import build_summary

        return build_summary(self, store, comps, held_j, held_f)


def _generator_params(spec: Any) -> dict[str, Any]:
    _, params = spec_parts(spec, "generator")
    return {k: v for k, v in params.items() if k in ("num_inference_steps", "guidance_scale",
                                                    "batch_size")}


def organism_ready(d: Path, preset: str, world_seed: int) -> bool:
    """An organism trained with this preset and world, loadable, with its judge."""
    from swisscheese.t2i.organism import JUDGE_DIR, read_card

    card = read_card(d)
    return bool(card and card.get("preset", {}).get("name") == preset
                and card.get("world_seed") == world_seed
                and card.get("world_fingerprint") == VisualWorld(world_seed).fingerprint()
                and (d / "model_index.json").is_file() and (d / JUDGE_DIR).is_dir())


def prepare_organisms(cfg: T2IRunConfig, out: str | Path, preset: str = "demo",
                      train: bool = True, transfer: bool = True,
                      progress: Progress | None = None) -> T2IRunConfig:
    """Fill in the organism directories a preset run uses (OUT/organism and, for transfer,
    OUT/organism-world{seed+1}), training the ones missing; a config run keeps its own."""
    from dataclasses import replace

    from swisscheese.t2i.organism import get_preset, train_organism

    if not train:
        return cfg
    get_preset(preset)
    out = Path(out)
    if cfg.organism is None:
        d = out / "organism"
        if not organism_ready(d, preset, cfg.world_seed):
            train_organism(d, preset, seed=cfg.seed, world_seed=cfg.world_seed,
                           progress=progress)
        cfg = replace(cfg, organism=str(d))
    if transfer and cfg.transfer_organism is None:
        ws = cfg.world_seed + 1
        d = out / f"organism-world{ws}"
        if not organism_ready(d, preset, ws):
            train_organism(d, preset, seed=cfg.seed, world_seed=ws, progress=progress)
        cfg = replace(cfg, transfer_organism=str(d))
    return cfg
