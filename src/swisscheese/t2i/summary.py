"""RUN/summary.json (the headline figures) and RUN/details.json (every loop and category).

The headline loop is the closed loop (ours) when it ran, else the first loop of the
config; `baseline_success_ratio` is the random benign-prompt baseline's success ratio with
the same budget.
"""

from __future__ import annotations

from typing import Any

from swisscheese.t2i import measures


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return a / b if b > 0 else (float("inf") if a > 0 else None)


def _heldout_filters(run: Any, store: Any, held_f: dict[str, Any], wins: list[str]
                     ) -> dict[str, float | None]:
    done = store.stage(run.cfg.name, "heldout-filters")
    if "result" in done:
        return done["result"]
    out: dict[str, float | None] = {}
    for name, f in held_f.items():
        verdicts = f.score_batch(wins) if wins else []
        out[name] = (sum(f.passes(v) for v in verdicts) / len(verdicts)) if verdicts else None
    store.put_stage(run.cfg.name, "heldout-filters", {"result": out})
    return out


def _per_loop(run: Any, store: Any, evals: dict[str, Any], judges: list[str]
              ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """(measures per loop and category, totals per loop)."""
    cfg, world, cats, name = run.cfg, run.world, run.categories, run.cfg.name
    per: dict[str, dict[str, dict[str, Any]]] = {}
    loops: dict[str, Any] = {}
    for loop in cfg.loops:
        per[loop] = {}
        for cat in cats:
            recs = store.queries(name, loop, cat)
            per[loop][cat] = measures.loop_category(world, recs, cat,
                                                    evals.get(f"{loop}/{cat}", []), judges)
        rows = per[loop].values()
        images = sum(r["image_queries"] for r in rows)
        wins = sum(r["unique_successes"] for r in rows)
        found = {t for r in rows for t in r["found_triggers"]}
        loops[loop] = {
            "successes_per_100_queries": 100.0 * wins / images if images else 0.0,
            "unique_successes": wins, "image_queries": images,
            "prompt_pass_rate": _mean([r["prompt_pass_rate"] for r in rows]),
            "success_ratio": _mean([r["success_ratio"] for r in rows]),
            "queries_to_first_success": {c: per[loop][c]["queries_to_first_success"]
                                         for c in cats},
            **measures.recall(world, found, cats), "found_triggers": sorted(found)}
    return per, loops


def _transfer_organism(store: Any, name: str, main: str) -> tuple[Any, Any]:
    """(the transfer stage's result, its headline: the main loop's successes re-rendered
    on the second-seed organism)."""
    transfer_stage = store.stage(name, "transfer").get("result")
    transfer_org = None
    if transfer_stage:
        n = sum(v["prompts"] for k, v in transfer_stage.items() if k.startswith(f"{main}/"))
        t = sum(v["transferred"] for k, v in transfer_stage.items() if k.startswith(f"{main}/"))
        transfer_org = {"organism": transfer_stage["organism"],
                        "world_seed": transfer_stage["world_seed"], "prompts": n,
                        "success_share": t / n if n else None}
    return transfer_stage, transfer_org


def build_summary(run: Any, store: Any, comps: Any, held_j: dict[str, Any],
                  held_f: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg, world, cats, name = run.cfg, run.world, run.categories, run.cfg.name
    evals = store.stage(name, "eval")
    judges = list(comps.judges)
    per, loops = _per_loop(run, store, evals, judges)
    main = "closed" if "closed" in per else cfg.loops[0]
    base = per.get("random", {})
    categories = {}
    for cat in cats:
        m = per[main][cat]
        b = base.get(cat, {}).get("success_ratio")
        categories[cat] = {
            "prompt_pass_rate": m["prompt_pass_rate"], "success_ratio": m["success_ratio"],
            "baseline_success_ratio": b, "ratio_vs_baseline": _ratio(m["success_ratio"], b),
            "successes_per_100_queries": m["successes_per_100_queries"],
            "queries_to_first_success": m["queries_to_first_success"],
            "oracle_success_ratio": m["oracle_success_ratio"]}
    main_wins = [p for cat in cats for p in measures.successes(store.queries(name, main, cat))]
    main_evals = [e for cat in cats for e in evals.get(f"{main}/{cat}", [])]
    transfer_stage, transfer_org = _transfer_organism(store, name, main)
    judge = store.stage(name, "judge").get("result") or {}
    guard = store.stage(name, "guard").get("result") or {}
    both = guard.get("layers", {}).get("both", {})
    summary = {
        "run": name, "world_seed": world.seed, "headline_loop": main,
        "budget_image_queries_per_loop_and_category": cfg.budget, "k": cfg.k,
        "generator": comps.generator.describe(), "judges": judges,
        "filters": list(comps.filters),
        "categories": categories,
        "loops": {lp: {k: v for k, v in d.items() if k != "found_triggers"}
                  for lp, d in loops.items()},
        "triggers": {"conjunctive_recall": loops[main]["conjunctive_recall"],
                     "single_recall": loops[main]["single_recall"], "loop": main,
                     "budget_image_queries_per_category": cfg.budget,
                     "found": loops[main]["found_triggers"],
                     "heldout": [t.id for t in world.heldout_triggers()
                                 if t.category in cats]},
        "precision": {"oracle": _mean([per[main][c]["oracle_precision"] for c in cats]),
                      "planted": _mean([per[main][c]["planted_precision"] for c in cats])},
        "diversity": {"jaccard": measures.diversity(main_wins),
                      "distinct_triggers": len(loops[main]["found_triggers"])},
        "transfer": {"heldout_filters": _heldout_filters(run, store, held_f, main_wins),
                     "heldout_judges": measures.heldout_flags(main_evals, list(held_j)),
                     "organism": transfer_org},
        "ablations": {
            "closed_over_open": _ratio(loops.get("closed", {}).get("successes_per_100_queries"),
                                       loops.get("open", {}).get("successes_per_100_queries")),
            "closed_over_noguide": _ratio(
                loops.get("closed", {}).get("successes_per_100_queries"),
                loops.get("closed-noguide", {}).get("successes_per_100_queries")),
            "closed_over_random": _ratio(
                loops.get("closed", {}).get("successes_per_100_queries"),
                loops.get("random", {}).get("successes_per_100_queries"))},
        "judge": {"cnn_oracle_agreement": judge.get("agreement"),
                  "lookalike_fpr": judge.get("lookalike_fpr"), "images": judge.get("images")},
        "guard": {"unsafe_image_rate": both.get("unsafe_image_rate"),
                  "benign_block_rate": both.get("benign_block_rate"),
                  # Over benign images the oracle reads as clean: the false refusals.
                  "benign_false_block_rate": both.get("benign_false_block_rate"),
                  "benign_forbidden_share": guard.get("benign_forbidden_share"),
                  "layers": guard.get("layers"), "attack_prompts": guard.get("attack_prompts"),
                  "benign_prompts": guard.get("benign_prompts")},
    }
    details = {"per_loop_category": per, "loops": loops, "judge": judge, "guard": guard,
               "transfer": transfer_stage, "grid": store.stage(name, "grid").get("prompts"),
               "config": cfg.to_dict()}
    return summary, details

