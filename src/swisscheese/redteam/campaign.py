"""Campaigns: behaviours x attacks x targets, one judge, every attempt in SQLite.

`run_campaign(config, out)` checks the whole config and builds every plugin before it
writes anything, then works through the plan:

- prompt attacks (fixed templates) are cut into batches of `batch_size` prompts per
  (target, attack), each sent in one batched model call; a batch is written in one
  transaction, keyed by (run, behaviour, attack, target, variant, sample);
- other attacks (searches) run per (behaviour, attack, target) unit, whose attempts are
  written together with the unit's completion mark.

Rerunning the same command resumes: finished keys and units are skipped, and because
the batches are a fixed partition of the plan and generation is seeded, the resumed run
ends with the same attempts as an uninterrupted one. A target that cannot be loaded or
reached turns its attempts into recorded errors; the rest of the campaign goes on.

The run directory then holds `store.sqlite`, `summary.json` (per target: ASR per family,
over-refusal, the strongest universal template), `details.json` and `attempts.jsonl`
(one `Attempt.to_dict()` per line with `family`, `level`, `sample`, `threshold` and
`success` added).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from pathlib import Path
from typing import Any

from swisscheese.fileio import atomic_write_json, atomic_write_text
from swisscheese.models.base import ChatModel
from swisscheese.progress import Progress
from swisscheese.redteam.attacks.prompting import Probe, PromptAttack, send
from swisscheese.redteam.base import (
    ATTACKS,
    JUDGES,
    Attack,
    AttackUnsupported,
    Attempt,
    Behaviour,
    Judge,
)
from swisscheese.redteam.behaviours import load_behaviours, world_behaviours
from swisscheese.redteam.config import OVERREFUSAL_LABEL, CampaignConfig, ConfigError
from swisscheese.redteam.context import RedteamContext, build_plugin, plugin_parameters
from swisscheese.redteam.summary import summarize
from swisscheese.redteam.targets import TargetPool, TargetSpec, is_local
from swisscheese.store.campaigns import AttemptRecord, CampaignStore
from swisscheese.world.core import World

UNSUPPORTED = "unsupported: "
STORE_FILE = "store.sqlite"


@dataclass
class Work:
    """One unit of work: a batch of probes, or one behaviour of a search attack."""

    target: TargetSpec
    label: str
    attack: Attack
    probes: list[tuple[Behaviour, Probe, int]] = field(default_factory=list)
    behaviour: Behaviour | None = None
    planned: int = 0
    key: tuple[str, str, str] = ("", "", "")  # (target, label, batch start or behaviour)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a campaign runs on Ray."""

    address: str | None = field(default=None, metadata={
        "help": "Ray cluster address (HOST:PORT, ray://HOST:PORT or 'auto'); None: a local "
                "instance."})
    workers: int | None = field(default=None, metadata={
        "help": "Actors, each with its own copy of the targets (default: one per CPU)."})
    num_cpus: int | None = field(default=None, metadata={
        "help": "CPUs of a local instance (default: all)."})


@dataclass
class CampaignResult:
    run_id: str
    out: Path
    resumed: bool
    attempts: int  # in the store for this run
    new: int  # made by this invocation
    errors: int
    seconds: float
    summary: dict[str, Any]
    details: dict[str, Any]

    @property
    def per_minute(self) -> float:
        return 60.0 * self.new / self.seconds if self.seconds > 0 else 0.0


def collect_behaviours(cfg: CampaignConfig, world: World, ctx: RedteamContext
                       ) -> tuple[list[Behaviour], list[Behaviour]]:
    """(behaviours to attack, look-alikes for over-refusal), ids unique across sources."""
    out: list[Behaviour] = []
    for i, src in enumerate(cfg.behaviours):
        if src.world is not None:
            out.extend(world_behaviours(world, src.world, ctx.grader, src.limit))
        else:
            out.extend(load_behaviours(src.file or "", src.limit))
        ids = [b.id for b in out]
        if len(set(ids)) != len(ids):
            dup = next(x for x in ids if ids.count(x) > 1)
            raise ConfigError(f"behaviours[{i}]: behaviour id {dup!r} appears twice across "
                              "the sources")
    if not out:
        raise ConfigError("behaviours: the sources hold no behaviour")
    looks = world_behaviours(world, "lookalikes", limit=cfg.overrefusal) \
        if cfg.overrefusal else []
    return out, looks


def _record(a: Attempt, label: str, target: str, sample: int,
            behaviour: Behaviour) -> AttemptRecord:
    v = a.verdict
    meta = dict(a.meta)
    family = str(meta.pop("family", "") or "")
    return AttemptRecord(
        behaviour_id=behaviour.id, attack=label, target=target, variant=a.variant,
        sample=sample, family=family, level=behaviour.level,
        conversation=[dict(m) for m in a.conversation], response=a.response,
        score=v.score if v else None, label=v.label if v else None,
        reason=v.reason if v else None, error=a.error, seconds=a.seconds, meta=meta)


def _error_attempt(label: str, b: Behaviour, variant: str, conversation: list[dict[str, str]],
                   error: str) -> Attempt:
    return Attempt(behaviour_id=b.id, attack=label, target="", variant=variant,
                   conversation=conversation, error=error)


class Campaign:
    """One campaign run over a config; see the module docstring."""

    def __init__(self, cfg: CampaignConfig, out: str | Path,
                 load: Callable[..., ChatModel] | None = None,
                 store: str | Path | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.out = Path(out)
        # The run directory's SQLite file, or any store (a PostgreSQL URL a team shares).
        self.store = store if store is not None else self.out / STORE_FILE
        self.world = World(seed=cfg.world_seed)
        bundle_loader = None
        if cfg.bundle is not None:
            bundle_path = cfg.bundle

            def bundle_loader() -> Any:
                from swisscheese.bundles import load_bundle

                return load_bundle(bundle_path)

        self.pool = TargetPool(cfg.base, bundle_loader, load)
        self.ctx = RedteamContext(world=self.world, bundle_loader=bundle_loader,
                                  load_model=self.pool.model, seed=cfg.seed)
        if cfg.helper_model:
            self.ctx.helper_model = self.pool.model(cfg.helper_model)
        self.behaviours, self.lookalikes = collect_behaviours(cfg, self.world, self.ctx)
        # Built once now so that a bad option fails before anything is written.
        self._build_plugins()
        for t in cfg.targets:
            t.model_spec(cfg.base)
            if t.layers() and cfg.bundle is None and t.bundle is None:
                raise ConfigError(f"target {t.name!r} needs a guard bundle: set `bundle` in "
                                  "the config (or on the target) or pass --bundle")
            if t.bundle is not None and not (Path(t.bundle) / "bundle.json").is_file():
                raise ConfigError(f"target {t.name!r}: no guard bundle at {t.bundle} (no "
                                  "bundle.json)")

    def _build_plugins(self) -> None:
        try:
            self.attacks: dict[str, Attack] = {
                a.key: build_plugin(ATTACKS, a.name, self.ctx, a.options)
                for a in self.cfg.attacks}
            self.judge: Judge = build_plugin(JUDGES, self.cfg.judge.name, self.ctx,
                                             self.cfg.judge.options)
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
        from swisscheese.redteam.attacks.plain import PlainAttack

        self.overrefusal_attack = PlainAttack(max_new_tokens=96)

    @property
    def templated(self) -> set[str]:
        return {k for k, a in self.attacks.items() if getattr(a, "templated", False)}

    # ---- references ---------------------------------------------------------------------
    def _reference_spec(self) -> str | None:
        if self.cfg.reference:
            return self.cfg.reference
        if self.cfg.base:
            return str(Path(self.cfg.base) / "helpful-only")
        return None

    def _needs_references(self) -> bool:
        """Whether any plugin grades (generating the references costs a model pass)."""
        classes = [ATTACKS[a.name] for a in self.cfg.attacks] + [JUDGES[self.cfg.judge.name]]
        return any({"grader", "references"} & set(plugin_parameters(c)) for c in classes)

    def _references(self, store: CampaignStore, run_id: str) -> dict[str, str] | None:
        """The helpful-only answers, made once per run and kept in the store so a resumed
        run grades against exactly the same yardstick."""
        spec = self._reference_spec()
        if spec is None or not self._needs_references():
            return None
        refs = store.references(run_id)
        if refs:
            return refs
        wanted = {b.hazard_id for b in self.behaviours if b.hazard_id}
        if not wanted:
            return None
        from swisscheese.models.base import GenerationParams
        from swisscheese.organism.evaluate import HAZARD_TOKENS

        # The plain requests `reference_answers` asks, for the hazards this campaign uses
        # only (the grader falls back to the ground truth for the others, never used here).
        plain = [e for e in self.world.eval_refusal()
                 if not e.heldout_phrasing and e.hazard_id in wanted]
        replies = self.pool.model(spec).generate_batch(
            [e.conversation() for e in plain], GenerationParams(max_new_tokens=HAZARD_TOKENS))
        refs = {str(e.hazard_id): m.content for e, m in zip(plain, replies, strict=True)}
        store.save_references(run_id, refs)
        return refs

    # ---- planning -----------------------------------------------------------------------
    def plan(self, store: CampaignStore, run_id: str) -> tuple[list[Work], int]:
        """The work still to do, and the number of attempts planned in all."""
        return self.plan_from(store.finished_keys(run_id), store.finished_units(run_id))

    def plan_from(self, done_keys: set[Any], done_units: set[Any]) -> tuple[list[Work], int]:
        """`plan` given what is done; each Work's `key` names it the same in every process
        (Ray actors find their work by it)."""
        total = 0
        jobs: list[tuple[str, Attack, list[Behaviour]]] = [
            (k, a, self.behaviours) for k, a in self.attacks.items()]
        if self.lookalikes:
            jobs.append((OVERREFUSAL_LABEL, self.overrefusal_attack, self.lookalikes))
        per_target: list[list[Work]] = []
        for t in self.cfg.targets:
            todo: list[Work] = []
            per_target.append(todo)
            for label, attack, behaviours in jobs:
                if isinstance(attack, PromptAttack):
                    items = []
                    for b in behaviours:
                        seen: dict[str, int] = {}
                        for p in attack.probes(b):
                            if label == OVERREFUSAL_LABEL:
                                p = replace(p, family=OVERREFUSAL_LABEL)
                            sample = seen.get(p.variant, 0)
                            seen[p.variant] = sample + 1
                            items.append((b, p, sample))
                    total += len(items)
                    size = self.cfg.batch_size
                    for i in range(0, len(items), size):
                        chunk = items[i:i + size]
                        if all((b.id, label, t.name, p.variant, s) in done_keys
                               for b, p, s in chunk):
                            continue
                        todo.append(Work(t, label, attack, probes=chunk, planned=len(chunk),
                                         key=(t.name, label, f"batch:{i}")))
                else:
                    per = int(getattr(attack, "n", 1) or 1)
                    for b in behaviours:
                        total += per
                        if (b.id, label, t.name) not in done_units:
                            todo.append(Work(t, label, attack, behaviour=b, planned=per,
                                             key=(t.name, label, f"unit:{b.id}")))
        # Round-robin over targets, so that concurrent workers find different models to
        # work on (each in-process model takes one call at a time).
        merged = [w for group in zip_longest(*per_target) for w in group if w is not None]
        return merged, total

    # ---- running ------------------------------------------------------------------------
    def execute(self, w: Work) -> list[AttemptRecord]:
        """Run one unit of work; every failure becomes recorded errors, never an exception."""
        try:
            with self.pool.lock(w.target):
                target = self.pool.get(w.target)
        except Exception as e:  # noqa: BLE001 - an unusable target is recorded, not raised
            return self._failed(w, f"target: cannot load {w.target.name!r}: "
                                   f"{type(e).__name__}: {e}")
        if w.behaviour is None:
            items = [(b, p) for b, p, _ in w.probes]
            with self.pool.lock(w.target):
                attempts = send(w.label, target, items, self.judge)
            return [_record(a, w.label, w.target.name, s, b)
                    for a, (b, _, s) in zip(attempts, w.probes, strict=True)]
        b = w.behaviour
        try:
            with self.pool.lock(w.target):
                attempts = w.attack.run(b, target, self.judge)
            if not attempts:
                raise RuntimeError("the attack returned no attempt")
        except AttackUnsupported as e:
            attempts = [_error_attempt(w.label, b, "unsupported", [], f"{UNSUPPORTED}{e}")]
        except Exception as e:  # noqa: BLE001 - an attack's crash is recorded, not raised
            attempts = [_error_attempt(w.label, b, "error", [],
                                       f"attack: {type(e).__name__}: {e}")]
        counts: dict[str, int] = {}
        out = []
        for a in attempts:
            s = counts.get(a.variant, 0)
            counts[a.variant] = s + 1
            out.append(_record(a, w.label, w.target.name, s, b))
        return out

    def _failed(self, w: Work, error: str) -> list[AttemptRecord]:
        if w.behaviour is None:
            return [_record(_error_attempt(w.label, b, p.variant, p.conversation, error),
                            w.label, w.target.name, s, b) for b, p, s in w.probes]
        return [_record(_error_attempt(w.label, w.behaviour, "error", [], error), w.label,
                        w.target.name, 0, w.behaviour)]

    def set_threads(self) -> None:
        if self.cfg.threads and any(is_local(t.model_spec(self.cfg.base))
                                    for t in self.cfg.targets):
            import torch

            torch.set_num_threads(self.cfg.threads)

    def use_references(self, refs: dict[str, str]) -> None:
        self.ctx.references = refs
        self.ctx._grader = None
        self._build_plugins()  # the judge now grades against the references

    def _results(self, todo: list[Work]) -> Iterator[tuple[Work, list[AttemptRecord]]]:
        """Each unit of work with its records, as units complete (threads in-process)."""
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            futures: dict[Future[list[AttemptRecord]], Work] = {
                pool.submit(self.execute, w): w for w in todo}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()

    def run(self, progress: Progress | None = None, ray: RayOptions | None = None
            ) -> CampaignResult:
        """Run (or resume) the campaign; with `ray`, the units run on Ray actors (one
        copy of the targets per actor) and the store is written here, as in-process."""
        t0 = time.perf_counter()
        if ray is not None:
            from swisscheese.raycluster import connect

            # Before anything is written: a cluster that cannot be reached leaves no run.
            connect(ray.address, ray.num_cpus)
        self.set_threads()
        self.out.mkdir(parents=True, exist_ok=True)
        run_id = self.cfg.name
        new = 0
        with CampaignStore(self.store) as store:
            resumed = store.open_run(run_id, self.cfg.to_dict(), self.cfg.config_hash())
            refs = self._references(store, run_id)
            if refs is not None:
                self.use_references(refs)
            todo, total = self.plan(store, run_id)
            done = total - sum(w.planned for w in todo)
            if progress:
                progress("resumed" if resumed else "attempts", done, total)
            if ray is None:
                results = self._results(todo)
            else:
                from swisscheese.redteam.distributed import ray_results

                results = ray_results(type(self), self.cfg, refs, todo, ray.workers)
            # Written as each unit completes, so a crash loses at most the units in flight.
            for w, records in results:
                unit = None
                if w.behaviour is not None:
                    unit = (w.behaviour.id, w.label, w.target.name)
                    store.clear_unit(run_id, unit)
                store.add_attempts(run_id, records, unit=unit)
                new += len(records)
                done += w.planned
                if progress:
                    progress(f"{w.target.name} {w.label}", done, total)
            result = self._finish(store, run_id, resumed, new, time.perf_counter() - t0)
        return result

    def _finish(self, store: CampaignStore, run_id: str, resumed: bool, new: int,
                seconds: float) -> CampaignResult:
        records = store.attempts(run_id)
        by_id = {b.id: b for b in [*self.behaviours, *self.lookalikes]}
        targets = [t.name for t in self.cfg.targets]
        summary, details = summarize(records, by_id, targets, self.templated,
                                     OVERREFUSAL_LABEL)
        details.update({"run": run_id, "config": self.cfg.to_dict(),
                        "target_info": {t.name: self.target_info(t) for t in self.cfg.targets},
                        "templated_attacks": sorted(self.templated),
                        "attempts": len(records), "new_attempts": new,
                        "seconds": round(seconds, 2),
                        "attempts_per_minute": round(60.0 * new / seconds, 1)
                        if seconds > 0 else None})
        lines = [json.dumps(attempt_line(r, by_id[r.behaviour_id]), sort_keys=True)
                 for r in records]
        atomic_write_text(self.out / "attempts.jsonl", "".join(x + "\n" for x in lines))
        atomic_write_json(self.out / "details.json", details)
        atomic_write_json(self.out / "summary.json", summary)
        errors = sum(r.error is not None for r in records)
        return CampaignResult(run_id, self.out, resumed, len(records), new, errors, seconds,
                              summary, details)


    def target_info(self, t: TargetSpec) -> dict[str, Any]:
        """What the target is, for the reports: model, guard layers, bundle, and the kind
        of its output classifier ("reply" or "exchange", as the bundle's holds it)."""
        layers = list(t.layers())
        info: dict[str, Any] = {"model": t.model_spec(self.cfg.base), "layers": layers,
                                "bundle": (t.bundle or self.cfg.bundle) if layers else None,
                                "output_context": None}
        if "output" in layers:
            try:
                bundle = self.ctx.bundle if t.bundle is None else self.pool.bundle(t)
                info["output_context"] = str(getattr(bundle.output, "output_context", "reply"))
            except Exception:  # noqa: BLE001 - a description only; the attempts recorded why
                info["output_context"] = None
        return info


def attempt_line(r: AttemptRecord, b: Behaviour) -> dict[str, Any]:
    """`Attempt.to_dict()` of a stored attempt, with the campaign's keys added."""
    from swisscheese.redteam.base import Verdict

    verdict = Verdict(r.score, r.label, r.reason or "") if r.label else None
    a = Attempt(behaviour_id=r.behaviour_id, attack=r.attack, target=r.target,
                variant=r.variant, conversation=r.conversation, response=r.response,
                verdict=verdict, error=r.error, seconds=r.seconds, meta=r.meta)
    d = a.to_dict()
    d.update({"family": r.family, "level": r.level, "sample": r.sample,
              "threshold": b.threshold,
              "success": r.error is None and r.score is not None and r.score >= b.threshold})
    return d


def run_campaign(cfg: CampaignConfig, out: str | Path, progress: Progress | None = None,
                 load: Callable[..., ChatModel] | None = None,
                 ray: RayOptions | None = None) -> CampaignResult:
    """Run (or resume) a campaign into `out`; see the module docstring."""
    return Campaign(cfg, out, load).run(progress, ray)


def comparable(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attempt lines without what depends on timing (for comparing two runs)."""
    return [{k: v for k, v in d.items() if k != "seconds"} for d in lines]
