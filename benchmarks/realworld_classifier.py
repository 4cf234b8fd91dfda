"""Train the realworld input bundle on ../shared/datasets and print its held-out figures.

    python benchmarks/realworld_classifier.py --out runs/bench        # a few minutes

Writes OUT/realworld/bundle (replaced) and OUT/realworld_classifier.json: the figures of
`metrics["realworld"]` (TPR at the calibrated FPR on AdvBench's held-out clusters, AUPRC,
recall on JailbreakBench, XSTest and the in-the-wild templates of later clusters, XSTest
safe over-refusal, prompt injection, recall and FPR per converter) plus settings and
wall time. See swisscheese.recipes.realworld.train for the splits.
"""

from __future__ import annotations

import os

# Before numpy is imported, so that BLAS and OpenMP cannot use a second core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from swisscheese.bundles import load_bundle  # noqa: E402
from swisscheese.fileio import atomic_write_text  # noqa: E402
from swisscheese.recipes.realworld.evaluate import figure_lines  # noqa: E402
from swisscheese.recipes.realworld.texts import DEFAULT_HELDOUT, RealWorldConfig  # noqa: E402
from swisscheese.recipes.realworld.train import train_realworld  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--datasets", type=Path, default=None,
                    help="default: ../shared/datasets next to the repository")
    ap.add_argument("--limit", type=int, default=None, help="rows per source (quick runs)")
    ap.add_argument("--target-fpr", type=float, default=0.005)
    ap.add_argument("--augment", type=int, default=RealWorldConfig.augment)
    ap.add_argument("--heldout", nargs="*", default=list(DEFAULT_HELDOUT))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    path = train_realworld(args.out / "realworld", args.datasets,
                           config=RealWorldConfig(augment=args.augment, limit=args.limit),
                           target_fpr=args.target_fpr, heldout=args.heldout,
                           seed=args.seed, overwrite=True)
    wall = time.perf_counter() - t0
    b = load_bundle(path)
    figures = b.metrics["realworld"]
    print(f"realworld input bundle: {path} (target FPR {args.target_fpr}, augment "
          f"{args.augment}, limit {args.limit}, seed {args.seed}; {wall:.0f} s)")
    print(f"  test sizes: {json.dumps(figures['n'])}")
    width = max(len(label) for label, _ in figure_lines(figures))
    for label, value in figure_lines(figures):
        print(f"  {label:<{width}}  {value}")
    result = {
        "bundle": str(path),
        "figures": figures,
        "counts": b.training.data["counts"],
        "calibration": {"input": b.metrics["input"], "output": b.metrics["output"]},
        "settings": vars(args) | {"out": str(args.out), "datasets": str(args.datasets),
                                  "heldout": list(args.heldout)},
        "wall_s": wall,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    out = args.out / "realworld_classifier.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
