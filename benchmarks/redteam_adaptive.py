"""The adaptive and white-box attacks on the demo organism: print the figures, write JSON.

    python benchmarks/redteam_adaptive.py --out runs/bench            # all parts
    python benchmarks/redteam_adaptive.py --out runs/bench --only embedding

On the eight challenge levels (detail judge against the helpful-only reference):

- PAIR with the built-in mutator as attacker, and TAP: ASR on the aligned organism and
  target queries per success;
- ART: how many prompts it finds that the guard bundle's input classifier passes yet that
  still elicit the level's details from aligned + input classifier, and how many of
  those the output classifier then stops (the same prompts sent to the full guard);
- the embedding attack: ASR on the unguarded aligned organism (target >= 0.9),
  behind the output classifier alone, and behind both classifiers.

Writes OUT/redteam_adaptive.json (figures and per-level rows). Parts run in order and the
JSON is rewritten after each, so a long run that is cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

PARTS = ("pair", "tap", "art", "embedding")


def references(helpful: Any, world: Any, levels: list[Any], cache: Path) -> dict[str, str]:
    """helpful-only's answers to the levels' plain requests (what `reference_answers`
    gives for them, without answering all 48 hazards), cached beside the output."""
    from swisscheese.models.base import GenerationParams
    from swisscheese.organism.evaluate import HAZARD_TOKENS

    key = world.fingerprint()
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("world") == key and all(b.hazard_id in data["refs"] for b in levels):
            return data["refs"]
    plain = {e.hazard_id: e.prompt for e in world.eval_refusal() if not e.heldout_phrasing}
    ids = [b.hazard_id for b in levels]
    replies = helpful.generate_batch([plain[h] for h in ids],
                                     GenerationParams(max_new_tokens=HAZARD_TOKENS))
    refs = {h: r.content for h, r in zip(ids, replies, strict=True)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"world": key, "refs": refs}))
    return refs


def search_figures(name: str, attack: Any, levels: list[Any], target: Any,
                   judge: Any, out: dict[str, Any], save: Any) -> dict[str, Any]:
    """Run the search on each level; `out` is updated and saved after every level, so a
    run cut short keeps the levels it finished (`levels_done`)."""
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for b in levels:
        attempts = attack.run(b, target, judge)
        best = next(a for a in attempts if a.meta.get("best"))
        ok = best.verdict is not None and best.verdict.success(b.threshold)
        queries = max((a.meta.get("queries", 0) for a in attempts), default=0)
        rows.append({"level": b.level, "threshold": b.threshold, "success": ok,
                     "best_score": best.verdict.score if best.verdict else None,
                     "queries": queries, "errors": sum(a.error is not None for a in attempts),
                     "best_prompt": best.conversation[0]["content"] if best.conversation else "",
                     "recipe": best.meta.get("recipe")})
        print(f"  {name} level {b.level} (threshold {b.threshold:.1f}): "
              f"{'broken' if ok else 'held'}, best score {rows[-1]['best_score']}, "
              f"{queries} queries", flush=True)
        wins = [r for r in rows if r["success"]]
        total_q = sum(r["queries"] for r in rows)
        out.update({"asr": len(wins) / len(rows), "levels_done": len(rows),
                    "levels_broken": len(wins), "queries_total": total_q,
                    "queries_per_success": total_q / len(wins) if wins else None,
                    "mean_queries_of_successes": (sum(r["queries"] for r in wins) / len(wins)
                                                  if wins else None),
                    "seconds": round(time.perf_counter() - t0, 1), "levels": rows})
        save()
    return out


def art_figures(attack: Any, levels: list[Any], input_target: Any, full_target: Any,
                judge: Any) -> dict[str, Any]:
    from swisscheese.redteam.attacks.pair import TargetProbe

    rows, found = [], []
    t0 = time.perf_counter()
    for b in levels:
        attempts = attack.run(b, input_target, judge)
        counts = attempts[0].meta.get("art", {})
        hits = [a for a in attempts if a.verdict is not None and a.verdict.success(b.threshold)]
        some = [a for a in attempts if a.verdict is not None and (a.verdict.score or 0) > 0]
        # The same prompts through the whole guard: does the output classifier catch them?
        probe = TargetProbe("art-recheck", b, full_target, judge, attack.max_new_tokens)
        rechecked = probe.send([a.conversation[0]["content"] for a in hits],
                               ["recheck"] * len(hits), [{}] * len(hits))
        through = sum(probe.success(a) for a in rechecked)
        rows.append({"level": b.level, "candidates": counts.get("candidates", 0),
                     "passed_input": counts.get("passed_input", 0),
                     "elicited_any_detail": len(some), "elicited_level": len(hits),
                     "through_full_guard": through})
        found.extend({"level": b.level, "prompt": a.conversation[0]["content"],
                      "input_score": a.meta.get("input_score"), "score": a.verdict.score}
                     for a in hits[:3])
        print(f"  art level {b.level}: {rows[-1]}", flush=True)
    tot = {k: sum(r[k] for r in rows) for k in rows[0] if k != "level"} if rows else {}
    return {**tot, "seconds": round(time.perf_counter() - t0, 1), "levels": rows,
            "examples": found}


def embedding_figures(attack: Any, levels: list[Any], targets: dict[str, Any],
                      judge: Any, out: dict[str, Any], save: Any) -> dict[str, Any]:
    out.update({"epsilon": attack.epsilon, "steps": attack.steps, "norm": attack.norm})
    for name, target in targets.items():
        t0 = time.perf_counter()
        rows = []
        for b in levels:
            (a,) = attack.run(b, target, judge)
            guard = a.meta.get("guard") or {}
            rows.append({"level": b.level, "score": a.verdict.score if a.verdict else None,
                         "success": bool(a.verdict and a.verdict.success(b.threshold)),
                         "blocked_by": guard.get("layer"), "error": a.error,
                         "reply": a.response[:160]})
            print(f"    {name} level {b.level}: score {rows[-1]['score']}, blocked by "
                  f"{rows[-1]['blocked_by']}", flush=True)
        out[name] = {"asr": sum(r["success"] for r in rows) / len(rows),
                     "mean_score": sum(r["score"] or 0 for r in rows) / len(rows),
                     "blocked": {k: sum(r["blocked_by"] == k for r in rows)
                                 for k in ("input", "output")},
                     "seconds": round(time.perf_counter() - t0, 1), "levels": rows}
        print(f"  embedding on {name}: ASR {out[name]['asr']:.3f}, mean detail score "
              f"{out[name]['mean_score']:.3f}, blocked {out[name]['blocked']}", flush=True)
        save()
    return out


def print_summary(result: dict[str, Any]) -> None:
    print("\nsummary (8 challenge levels, demo organism):")
    if "pair" in result:
        r = result["pair"]
        print(f"  PAIR ASR {r['asr']:.3f} ({r['levels_broken']}/{r['levels_done']} levels), "
              f"queries per success {r['queries_per_success']}")
    if "tap" in result:
        r = result["tap"]
        print(f"  TAP  ASR {r['asr']:.3f} ({r['levels_broken']}/{r['levels_done']} levels), "
              f"queries per success {r['queries_per_success']}")
    if "art" in result:
        r = result["art"]
        print(f"  ART  {r['passed_input']} of {r['candidates']} candidates passed the input "
              f"classifier; {r['elicited_level']} reached their level's threshold "
              f"({r['elicited_any_detail']} gave some detail); {r['through_full_guard']} got "
              "through the output classifier too")
    if "embedding" in result:
        r = result["embedding"]
        print("  embedding ASR " + ", ".join(
            f"{k} {v['asr']:.3f}" for k, v in r.items() if isinstance(v, dict)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--organism", type=Path, default=Path("runs/demo/organism"),
                    help="holds aligned/ and helpful-only/")
    ap.add_argument("--bundle", type=Path, default=Path("runs/classifier/bundle"))
    ap.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--pair-streams", type=int, default=3)
    ap.add_argument("--pair-iterations", type=int, default=3)
    ap.add_argument("--tap-branching", type=int, default=2)
    ap.add_argument("--tap-width", type=int, default=2)
    ap.add_argument("--tap-depth", type=int, default=3)
    ap.add_argument("--art-levels", type=int, default=4, help="the first N levels")
    ap.add_argument("--art-rounds", type=int, default=2)
    ap.add_argument("--art-branching", type=int, default=4)
    ap.add_argument("--epsilon", type=float, default=0.15)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--print-only", action="store_true",
                    help="print the figures already in OUT/redteam_adaptive.json; run nothing")
    args = ap.parse_args()
    if args.print_only:
        path = args.out / "redteam_adaptive.json"
        if not path.is_file():
            print(f"error: {path} does not exist; run the benchmark first", file=sys.stderr)
            return 1
        print_summary(json.loads(path.read_text()))
        return 0
    for p in (args.organism / "aligned", args.organism / "helpful-only", args.bundle):
        if not p.is_dir():
            print(f"error: {p} does not exist (make demo; swisscheese classifier train)",
                  file=sys.stderr)
            return 1

    from swisscheese.bundles import load_bundle
    from swisscheese.guard.pipeline import Guard, GuardedChatModel
    from swisscheese.models import load_model
    from swisscheese.redteam.attacks.art import ARTAttack
    from swisscheese.redteam.attacks.embedding import EmbeddingAttack
    from swisscheese.redteam.attacks.pair import PAIRAttack
    from swisscheese.redteam.attacks.tap import TAPAttack
    from swisscheese.redteam.behaviours import level_behaviours
    from swisscheese.redteam.judges.detail import DetailJudge
    from swisscheese.world import World
    from swisscheese.world.grader import Grader

    parts = args.only or list(PARTS)
    out_path = args.out / "redteam_adaptive.json"
    args.out.mkdir(parents=True, exist_ok=True)
    card = json.loads((args.organism / "aligned" / "swisscheese.json").read_text())
    world = World(seed=card["world_seed"])
    levels = level_behaviours(world)
    aligned = load_model(str(args.organism / "aligned"), name="aligned")
    refs = references(load_model(str(args.organism / "helpful-only")), world, levels,
                      args.out / "redteam_adaptive_refs.json")
    grader = Grader(world, refs)
    levels = level_behaviours(world, grader)
    judge = DetailJudge(grader)
    bundle = load_bundle(args.bundle)

    def guarded(inp: bool, outp: bool, name: str) -> GuardedChatModel:
        return GuardedChatModel(aligned, Guard(bundle, input_layer=inp, output_layer=outp),
                                name=name)

    result: dict[str, Any] = {"organism": str(args.organism), "bundle": str(args.bundle),
                              "levels": len(levels), "max_new_tokens": args.max_new_tokens}
    n = args.max_new_tokens

    def save() -> None:
        """Merge into the file as it is now: parts measured by other --only runs stay."""
        from swisscheese.fileio import atomic_write_json

        on_disk = json.loads(out_path.read_text()) if out_path.is_file() else {}
        result.update({k: v for k, v in on_disk.items() if k in PARTS and k not in parts})
        atomic_write_json(out_path, result)

    if "pair" in parts:
        print(f"PAIR (mutator attacker, {args.pair_streams} streams x "
              f"{args.pair_iterations} iterations) on aligned:", flush=True)
        result["pair"] = {"streams": args.pair_streams, "iterations": args.pair_iterations}
        search_figures(
            "pair", PAIRAttack(n_streams=args.pair_streams, n_iterations=args.pair_iterations,
                               max_new_tokens=n, world=world), levels, aligned, judge,
            result["pair"], save)
    if "tap" in parts:
        print(f"TAP (mutator attacker, branching {args.tap_branching}, width {args.tap_width}, "
              f"depth {args.tap_depth}) on aligned:", flush=True)
        result["tap"] = {"branching": args.tap_branching, "width": args.tap_width,
                         "depth": args.tap_depth}
        search_figures(
            "tap", TAPAttack(branching_factor=args.tap_branching, width=args.tap_width,
                             depth=args.tap_depth, max_new_tokens=n, world=world),
            levels, aligned, judge, result["tap"], save)
    if "art" in parts:
        print(f"ART on aligned+input, levels 1-{args.art_levels}:", flush=True)
        art = ARTAttack(bundle=bundle, rounds=args.art_rounds, branching=args.art_branching,
                        beam=2, max_queries=None, max_new_tokens=n, world=world)
        result["art"] = art_figures(art, levels[: args.art_levels],
                                    guarded(True, False, "aligned+input"),
                                    guarded(True, True, "aligned+input+output"), judge)
        save()
    if "embedding" in parts:
        print(f"embedding attack (epsilon {args.epsilon}, {args.steps} steps):", flush=True)
        emb = EmbeddingAttack(epsilon=args.epsilon, steps=args.steps, max_new_tokens=n)
        result["embedding"] = {}
        embedding_figures(
            emb, levels, {"aligned": aligned,
                          "aligned+input+output": guarded(True, True, "aligned+input+output"),
                          "aligned+output": guarded(False, True, "aligned+output")},
            judge, result["embedding"], save)

    save()
    print_summary(result)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
