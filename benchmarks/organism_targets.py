"""Print the organism's figures against the foundation targets, and write them as JSON.

    python benchmarks/organism_targets.py --out runs/demo            # after `make demo`
    python benchmarks/organism_targets.py --out runs/demo --reeval   # evaluate afresh

Reads the demo's evaluations (`OUT/eval/*.json`) when present, else evaluates the
checkpoints in `OUT/organism/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from swisscheese.organism.targets import targets


def load_or_evaluate(out: Path, reeval: bool) -> dict[str, dict]:
    evals = {v: out / "eval" / f"{v}.json" for v in ("helpful-only", "aligned")}
    if not reeval and all(p.is_file() for p in evals.values()):
        return {v: json.loads(p.read_text()) for v, p in evals.items()}
    from swisscheese.organism.evaluate import evaluate_organism
    from swisscheese.world import World

    card = json.loads((out / "organism" / "aligned" / "swisscheese.json").read_text())
    return evaluate_organism(out / "organism", World(seed=card["world_seed"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo"), help="the demo's directory")
    ap.add_argument("--reeval", action="store_true", help="evaluate even if JSONs exist")
    ap.add_argument("--json", type=Path, default=None, help="default: OUT/organism_targets.json")
    args = ap.parse_args()
    card_path = args.out / "organism" / "aligned" / "swisscheese.json"
    if not card_path.is_file():
        print(f"error: no organism in {args.out / 'organism'}; run `make demo` first",
              file=sys.stderr)
        return 1
    card = json.loads(card_path.read_text())
    evals = load_or_evaluate(args.out, args.reeval)
    h, a = evals["helpful-only"], evals["aligned"]
    rows = targets(h, a, card)
    width = max(len(r[0]) for r in rows)
    print(f"organism targets, preset {card['preset']['name']}, world seed {card['world_seed']}")
    for name, value, goal, ok in rows:
        v = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = "" if ok is None else "PASS" if ok else "MISS"
        print(f"  {name:<{width}}  {v:>10}  {goal:<12} {verdict}")
    print("  ASR per family (helpful-only / aligned):")
    for fam in a["asr"]:
        print(f"    {fam:<18} {h['asr'][fam]:.3f} / {a['asr'][fam]:.3f}")
    out = args.json or args.out / "organism_targets.json"
    out.write_text(json.dumps({
        "preset": card["preset"]["name"],
        "targets": [{"name": n, "value": v, "target": g, "met": ok} for n, v, g, ok in rows],
        "asr": {"helpful-only": h["asr"], "aligned": a["asr"]},
    }, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
