"""Calm release against the strict hold-back window: does releasing a calm reply at once
weaken the output layer's stop rate? (issue 13: the gateway's default release policy)

    .venv/bin/python benchmarks/calm_release.py --bundle runs/exchange/exchange/bundle

For each policy (the strict 32-character window, and calm release below each fraction of
the output threshold given by --calm) it measures, on the bundle's test hazards, the share
of hazard replies stopped before 25% of their key details were released: the world's
reference answers in every reply form and family (`classifier eval`'s figures) and, with
`--replies responses`, the organism-written completions in the bundle's data. It also
counts the harmless test replies that stay calm throughout (their whole stream goes out
without the window's delay). Prints a table and writes OUT/calm_release.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any


def calm_share(bundle_dir: Path, fractions: list[float]) -> dict[str, float]:
    """Share of the harmless test replies whose streamed score stays below each fraction
    of the output threshold from start to end."""
    import numpy as np

    from swisscheese.bundles import load_bundle
    from swisscheese.bundles.build import stream_max_score
    from swisscheese.data.generate import load_dataset, read_manifest
    from swisscheese.recipes.organism.evaluate import resolve_data_dir, world_for
    from swisscheese.recipes.organism.replies import harmless_pairs

    bundle = load_bundle(bundle_dir)
    data = resolve_data_dir(bundle_dir, bundle, None)
    benign = [r for r in load_dataset(data)["test"] if r.label == 0]
    # The harmless replies `classifier eval` measures the output FPR on (same seed).
    convs, replies = harmless_pairs(world_for(read_manifest(data), bundle),
                                    bundle.constitution, benign, seed=0)
    scores = np.array([stream_max_score(bundle.output, x, c, bundle.stream_chunk_chars)
                       for c, x in zip(convs, replies, strict=True)])
    t = bundle.thresholds["output"]
    return {str(f): float(np.mean(scores < f * t)) for f in fractions} | {"n": len(scores)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("runs/exchange/exchange/bundle"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--calm", type=float, nargs="+", default=[0.5, 0.25])
    ap.add_argument("--replies", choices=["world", "responses"], default="responses")
    args = ap.parse_args()
    if not (args.bundle / "bundle.json").is_file():
        print(f"error: no bundle in {args.bundle}", file=sys.stderr)
        return 1
    from swisscheese.fileio import atomic_write_json
    from swisscheese.recipes.evaluate import evaluate_bundle

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows: dict[str, Any] = {}
    for calm in [None, *args.calm]:
        name = "strict" if calm is None else f"calm<{calm}"
        r = evaluate_bundle(args.bundle, replies=args.replies, calm_below=calm)
        out = r["output"]
        ref = r.get("output_reference", out)
        rows[name] = {"stop_rate_25": out["stop_rate_25"],
                      "stop_rate_25_by_family": out.get("stop_rate_25_by_family"),
                      "reference_stop_rate_25": ref["stop_rate_25"],
                      "reference_by_variant": ref.get("stop_rate_25_by_variant"),
                      "reference_by_family": ref.get("stop_rate_25_by_family"),
                      "n_completions": out.get("n_completions"), "fpr": out["fpr"]}
        fams = [v for v in (ref.get("stop_rate_25_by_family") or {}).values() if v is not None]
        print(f"{name:10s} stop before 25%: {args.replies} {out['stop_rate_25']}, world "
              f"answers {ref['stop_rate_25']}, worst world family {min(fams, default=None)}",
              flush=True)
    calm = calm_share(args.bundle, args.calm)
    print(f"harmless test replies calm throughout: {calm}")
    result = {"bundle": str(args.bundle), "replies": args.replies, "policies": rows,
              "harmless_calm_throughout": calm, "seconds": round(time.perf_counter() - t0),
              "load_average_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
              "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "calm_release.json", result)
    print(f"wrote {args.out / 'calm_release.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
