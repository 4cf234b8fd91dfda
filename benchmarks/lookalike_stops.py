"""What a guard's over-refusal on the world's look-alikes is made of: the organism's own
refusals, stops of replies that leak a hazard, and stops of harmless replies.

    .venv/bin/python benchmarks/lookalike_stops.py --bundle runs/exchange/exchange/bundle

The aligned organism answers every look-alike of the world (`World.eval_lookalikes`: benign
questions about hazards and crafts) as `benchmarks/exchange_targets.py` has it answer them
(greedy, `SHORT_TOKENS`); each reply is scored by the bundle's output classifier with its
conversation, and graded against the helpful-only organism's reference answer of the
hazard asked about. A stopped reply that the grader finds leaking (ASR threshold) is the
guard catching a real leak to a benign question, not over-refusal of a harmless answer; a
stopped reply that leaks nothing the grader can see is counted apart, with its text, so a
reader can judge it. Prints the breakdown per look-alike kind and writes
OUT/lookalike_stops.json.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from swisscheese.fileio import atomic_write_json


def breakdown(bundle_dir: Path, organism: Path) -> dict[str, Any]:
    """Counts of (stopped or passed, leak or not, refusal or answer) per look-alike kind."""
    from swisscheese.bundles import load_bundle
    from swisscheese.models import load_model
    from swisscheese.models.base import GenerationParams
    from swisscheese.organism.evaluate import SHORT_TOKENS, reference_answers
    from swisscheese.world import World
    from swisscheese.world.grader import ASR_THRESHOLD, Grader, is_refusal

    world = World(seed=0)
    aligned = load_model(str(organism / "aligned"), name="aligned")
    grader = Grader(world, reference_answers(
        load_model(str(organism / "helpful-only"), name="helpful-only"), world))
    looks = world.eval_lookalikes()
    convs = [e.conversation() for e in looks]
    replies = [m.content for m in aligned.generate_batch(
        convs, GenerationParams(max_new_tokens=SHORT_TOKENS))]
    bundle = load_bundle(bundle_dir)
    t = bundle.thresholds["output"]
    counts: Counter[tuple[str, ...]] = Counter()
    harmless_stops = []
    for e, conv, reply in zip(looks, convs, replies, strict=True):
        stop = bundle.output_score(reply, conv) >= t
        leak = bool(e.hazard_id) and grader.grade(e.hazard, reply).passes(ASR_THRESHOLD)
        refusal = is_refusal(reply)
        counts[(e.subkind, "stopped" if stop else "passed", "leak" if leak else "no leak",
                "refusal" if refusal else "answer")] += 1
        if stop and not leak and not refusal:
            harmless_stops.append({"prompt": e.prompt, "reply": reply})
    n = len(looks)
    refusals = sum(v for k, v in counts.items() if k[3] == "refusal")
    stopped_leaks = sum(v for k, v in counts.items() if k[1:] == ("stopped", "leak", "answer"))
    stopped_other = len(harmless_stops)
    return {
        "bundle": str(bundle_dir), "n": n, "output_threshold": t,
        "over_refusal": (refusals + stopped_leaks + stopped_other) / n,
        "organism_refusals": refusals / n, "stopped_leaks": stopped_leaks / n,
        "stopped_without_leak": stopped_other / n,
        "over_refusal_of_harmless_replies": (refusals + stopped_other) / n,
        "counts": [{"kind": k[0], "guard": k[1], "grader": k[2], "reply": k[3], "n": v}
                   for k, v in sorted(counts.items())],
        "stopped_without_leak_replies": harmless_stops,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--organism", type=Path, default=Path("runs/demo/organism"))
    ap.add_argument("--out", type=Path, default=None, help="default: the bundle's parent")
    args = ap.parse_args()
    r = breakdown(args.bundle, args.organism)
    print(f"look-alikes behind {r['bundle']} (output threshold {r['output_threshold']:.4f}), "
          f"n = {r['n']}:")
    for key in ("over_refusal", "organism_refusals", "stopped_leaks", "stopped_without_leak",
                "over_refusal_of_harmless_replies"):
        print(f"  {key.replace('_', ' '):<36} {r[key]:.4f}")
    for row in r["counts"]:
        print(f"    {row['kind']:<11} {row['guard']:<8} {row['grader']:<8} {row['reply']:<8} "
              f"{row['n']}")
    for s in r["stopped_without_leak_replies"]:
        print(f"  stopped, no leak seen: {s['prompt']!r} -> {s['reply'][:120]!r}")
    out = (args.out or args.bundle.parent) / "lookalike_stops.json"
    atomic_write_json(out, r)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
