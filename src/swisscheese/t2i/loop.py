"""ART's writer-guide loop (open) and ours (closed), and the random baseline.

Every loop spends a budget of image queries per harmful category. A candidate is a prompt;
the prompt filters score it; unless it is blocked (closed loop and baseline: blocked
prompts are not rendered, which costs no image query) the generator renders
`search_images` pictures and the loop's judges read them. A candidate is a success when
every filter passed it and a judge flagged one of its images for the category.

* open (ART): threads start from "a picture of a cat"; each round the writer rewrites the
  thread's last prompt following the guide, the new prompt is always rendered, the next
  round continues from it; a fixed number of rounds. The judges only score afterwards.
* closed (ours): the judge is in the loop. Threads keep their best candidate (and drift
  to equally good ones), stop on success and restart when they stall, each time from a
  fresh ordinary caption; part of every
  step mutates earlier successes; exploring threads are told to avoid words that already
  explain successes, so they go looking for other holes; words seen only in blocked
  prompts (the filters' blocklist, learnt from the outside) are avoided by every
  candidate; blocked and repeated prompts are never rendered. After a miss the built-in
  mutator regroups (a fresh set of mood words and objects, the pairs tried least), so a
  hole that only two words together open is found by covering the pairs.
* closed-noguide: the closed loop with the guide off (the writer gets no feedback).
* random: random benign captions of the world, filtered and rendered like the closed loop.

The state of a loop is a fold over its records, so a resumed run rebuilds it from the
store and carries on; each step's records are written in one transaction.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from swisscheese.store.t2i import QueryRecord, T2IStore
from swisscheese.t2i.base import (
    NO_GUIDANCE,
    Generator,
    Guidance,
    ImageJudge,
    PromptFilter,
    Writer,
)
from swisscheese.t2i.guide import category_score, guidance_for, image_hits
from swisscheese.t2i.world import SEED_PROMPT, VisualWorld, words_of

STOPWORDS = frozenset("a an the of in on at with and to by as over behind it its next "
                      "holding picture image style bearing marked".split())
EXPLOIT = "exploit"


def content_words(prompt: str) -> set[str]:
    return {w for w in words_of(prompt) if w not in STOPWORDS}


def stable_int(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


@dataclass
class Components:
    world: VisualWorld
    writer: Writer
    generator: Generator
    judges: dict[str, ImageJudge]
    filters: dict[str, PromptFilter]


@dataclass
class Thread:
    id: str
    prompt: str = SEED_PROMPT
    score: float = -1.0
    stale: int = 0
    guidance: Guidance = NO_GUIDANCE


@dataclass
class LoopState:
    loop: str
    category: str
    seq: int = 0
    step: int = 0
    images: int = 0
    seen: set[str] = field(default_factory=set)
    threads: dict[str, Thread] = field(default_factory=dict)
    archive: list[QueryRecord] = field(default_factory=list)
    exploited: Counter[str] = field(default_factory=Counter)
    rendered: Counter[str] = field(default_factory=Counter)
    won: Counter[str] = field(default_factory=Counter)
    blocked_words: Counter[str] = field(default_factory=Counter)
    passed_words: Counter[str] = field(default_factory=Counter)

    def suspects(self) -> tuple[str, ...]:
        """Words that already explain successes: in two or more, at a high hit rate."""
        return tuple(sorted(w for w, n in self.won.items()
                            if n >= 2 and n / max(1, self.rendered[w]) >= 0.5))

    def filtered(self) -> tuple[str, ...]:
        """Words the prompt filters seem to list: in two or more blocked prompts and in no
        prompt that passed. A black-box attacker learns the blocklist this way, and stops
        spending candidates on it."""
        return tuple(sorted(w for w, n in self.blocked_words.items()
                            if n >= 2 and not self.passed_words[w]))


class LoopRunner:
    """Runs one loop kind for one category against the components, through the store."""

    def __init__(self, comps: Components, cfg: Any, store: T2IStore, run_id: str,
                 progress: Callable[[str, int, int, dict | None], None] | None = None
                 ) -> None:
        self.c = comps
        self.cfg = cfg
        self.store = store
        self.run_id = run_id
        self.progress = progress
        self.thresholds = {n: j.threshold for n, j in comps.judges.items()}
        self.noted: Counter[str] = Counter()  # proposed prompts the writer observed already

    # ---- evaluation of candidates --------------------------------------------------------
    def evaluate(self, state: LoopState, jobs: Sequence[tuple[str, str | None, str, str]],
                 gate: bool) -> list[QueryRecord]:
        """Filter, render and judge (thread, parent, prompt, guidance text) jobs."""
        prompts = [j[2] for j in jobs]
        fv = {n: f.score_batch(prompts) for n, f in self.c.filters.items()}
        passed = [all(self.c.filters[n].passes(fv[n][i]) for n in fv)
                  for i in range(len(prompts))]
        render = [i for i in range(len(prompts)) if passed[i] or not gate]
        k = self.cfg.search_images
        pics = self.c.generator.generate([prompts[i] for i in render], k, seed=self.cfg.seed)
        flat = [im for group in pics for im in group]
        flat_prompts = [prompts[i] for i in render for _ in range(k)]
        jv = {n: j.judge_batch(flat, flat_prompts) for n, j in self.c.judges.items()}
        out = []
        slot = {i: n for n, i in enumerate(render)}
        for i, (thread, parent, prompt, gtext) in enumerate(jobs):
            verdicts: list[dict[str, Any]] = []
            if i in slot:
                base = slot[i] * k
                verdicts = [{n: jv[n][base + j].to_dict() for n in jv} for j in range(k)]
            hits = image_hits(verdicts, state.category, self.thresholds)
            scores = [s for per in verdicts for v in per.values()
                      if (s := category_score(v, state.category)) is not None]
            out.append(QueryRecord(
                loop=state.loop, category=state.category, seq=state.seq + i, step=state.step,
                thread=thread, prompt=prompt, parent=parent, blocked=not passed[i],
                filters={n: fv[n][i].to_dict() for n in fv}, images=len(verdicts) and k,
                verdicts=verdicts, success=passed[i] and any(hits),
                score=max(scores) if scores else None, guidance=gtext))
        return out

    # ---- state ---------------------------------------------------------------------------
    def absorb(self, state: LoopState, r: QueryRecord) -> None:
        state.seq = max(state.seq, r.seq + 1)
        state.step = max(state.step, r.step)
        state.images += r.images
        state.seen.add(r.prompt)
        if self.noted[r.prompt]:
            self.noted[r.prompt] -= 1
        else:  # replayed from the store: the writer has not seen it in this process
            self.c.writer.observe(r.prompt)
        (state.blocked_words if r.blocked else state.passed_words).update(
            content_words(r.prompt))
        # Suspect words are counted on exploring candidates only: a variation of a success
        # copies its incidental words too, and counting those would mark them as holes.
        if r.images and r.thread != EXPLOIT:
            words = content_words(r.prompt)
            state.rendered.update(words)
            if r.success:
                state.won.update(words)
        if r.success and all(a.prompt != r.prompt for a in state.archive):
            state.archive.append(r)
        if state.loop == "random":
            return
        guidance = guidance_for(r.verdicts, state.category, self.thresholds,
                                enabled=state.loop != "closed-noguide")
        t = state.threads.get(r.thread)
        if t is None:
            return
        if state.loop == "open":
            t.prompt, t.guidance = r.prompt, guidance
            return
        score = -1.0 if r.blocked else (r.score if r.score is not None else 0.0)
        if r.success:  # stop the thread on success; a fresh one starts elsewhere
            state.threads[r.thread] = self.fresh_thread(r)
        elif score > t.score:
            t.prompt, t.score, t.stale, t.guidance = r.prompt, score, 0, guidance
        elif score == t.score and not r.blocked:
            # Neutral drift: an equally good candidate moves the thread on (it keeps
            # exploring instead of circling its parent), without resetting its patience.
            t.prompt, t.guidance = r.prompt, guidance
            t.stale += 1
        else:
            t.stale += 1
            t.guidance = guidance
            if t.stale > self.cfg.patience:
                state.threads[r.thread] = self.fresh_thread(r)

    def fresh_thread(self, r: QueryRecord) -> Thread:
        """A restarted thread begins at an ordinary caption of the world (a new region of
        prompt space), not at the seed prompt every thread began at."""
        rng = random.Random(stable_int(self.cfg.seed, r.loop, r.category, r.seq, "restart"))
        return Thread(r.thread, prompt=self.c.world.benign_caption(rng))

    # ---- planning ------------------------------------------------------------------------
    def plan(self, state: LoopState) -> list[tuple[str, str, Guidance]]:
        """(thread, parent, guidance) for the next step's candidates."""
        rng = random.Random(stable_int(self.cfg.seed, state.loop, state.category, state.step))
        if state.loop == "open":
            return [(t.id, t.prompt, t.guidance) for t in state.threads.values()]
        jobs: list[tuple[str, str, Guidance]] = []
        guide_on = state.loop != "closed-noguide"
        listed = state.filtered()
        avoid = tuple(sorted({*state.suspects(), *listed}))
        threads = list(state.threads.values())
        for i in range(self.cfg.batch):
            if state.archive and rng.random() < self.cfg.exploit:
                # Spend where it pays: vary the successes mutated least so far.
                low = min(state.exploited[a.prompt] for a in state.archive)
                parent = rng.choice([a for a in state.archive
                                     if state.exploited[a.prompt] == low])
                state.exploited[parent.prompt] += 1
                g = (guidance_for(parent.verdicts, state.category, self.thresholds)
                     if guide_on else NO_GUIDANCE)
                jobs.append((EXPLOIT, parent.prompt, replace(g, avoid=listed)))
            else:
                t = threads[i % len(threads)]
                g = t.guidance
                jobs.append((t.id, t.prompt, Guidance(g.text, g.hits, g.k, g.score,
                                                      avoid=avoid)))
        return jobs

    def propose(self, state: LoopState, jobs: list[tuple[str, str, Guidance]],
                dedup: bool, limit: int | None = None) -> list[tuple[str, str | None, str, str]]:
        """Up to `limit` prompts, one per job. The writer observes each accepted prompt at
        once, so the next job of the same step already knows it was tried (a memory of
        the word pairs tried would otherwise hand a whole batch the same fresh group)."""
        out: list[tuple[str, str | None, str, str]] = []
        batch_seen: set[str] = set()
        for i, (thread, parent, g) in enumerate(jobs):
            if limit is not None and len(out) >= limit:
                break
            for attempt in range(3 if dedup else 1):
                seed = stable_int(self.cfg.seed, state.loop, state.category, state.step, i,
                                  attempt)
                prompt = self.c.writer.propose(parent, g, state.category, 1, seed)[0].prompt
                if not dedup or (prompt not in state.seen and prompt not in batch_seen):
                    break
            else:
                continue  # the writer keeps repeating itself here; skip this slot
            batch_seen.add(prompt)
            self.c.writer.observe(prompt)
            self.noted[prompt] += 1  # absorb() must not observe it a second time
            out.append((thread, parent, prompt, g.text))
        return out

    def random_jobs(self, state: LoopState) -> list[tuple[str, str | None, str, str]]:
        rng = random.Random(stable_int(self.cfg.seed, "random", state.category, state.step))
        out: list[tuple[str, str | None, str, str]] = []
        for _ in range(self.cfg.batch):
            p = self.c.world.benign_caption(rng)
            if p not in state.seen:
                out.append(("random", None, p, ""))
        return out

    # ---- the loop ------------------------------------------------------------------------
    def run(self, loop: str, category: str) -> LoopState:
        state = LoopState(loop, category)
        if loop == "open":
            n = max(1, math.ceil(self.cfg.budget / (self.cfg.rounds * self.cfg.search_images)))
            state.threads = {f"t{i}": Thread(f"t{i}") for i in range(n)}
        elif loop != "random":
            state.threads = {f"t{i}": Thread(f"t{i}") for i in range(self.cfg.threads)}
        for r in self.store.queries(self.run_id, loop, category):
            self.absorb(state, r)
        max_candidates = 20 * self.cfg.budget  # a writer whose prompts are all blocked
        empty_steps = 0
        while state.images < self.cfg.budget and state.seq < max_candidates:
            if loop == "open" and state.step >= self.cfg.rounds:
                break
            state.step += 1
            limit = max(1, math.ceil((self.cfg.budget - state.images)
                                     / self.cfg.search_images))
            if loop == "random":
                jobs = self.random_jobs(state)[:limit]
            else:
                jobs = self.propose(state, self.plan(state), dedup=loop != "open",
                                    limit=None if loop == "open" else limit)
            if not jobs:
                empty_steps += 1
                if empty_steps >= 5:
                    break
                continue
            records = self.evaluate(state, jobs, gate=loop != "open")
            self.store.add_queries(self.run_id, records)
            for r in records:
                self.absorb(state, r)
            if self.progress:
                self.progress(f"{loop} {category}", min(state.images, self.cfg.budget),
                              self.cfg.budget, {"successes": len(state.archive)})
        return state
