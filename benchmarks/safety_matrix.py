"""Run the safety matrix on the demo organism and print its table and targets.

    python benchmarks/safety_matrix.py --out runs/matrix                 # the demo organism
    python benchmarks/safety_matrix.py --out /tmp/m --base /tmp/org --quick

Resumes what `--out` already holds (each stage is cached there). Writes OUT/matrix.json and
OUT/matrix.md (the matrix's own files) and OUT/safety_matrix_bench.json: the safety
targets, the cost ratio, the wall time of every stage and the machine's load average, which
says how far the timings are from an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

from swisscheese.fileio import atomic_write_json
from swisscheese.training.matrix import MatrixConfig, run_matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/matrix"))
    ap.add_argument("--base", type=Path, default=Path("runs/demo/organism"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the test organism)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-stride", type=int, default=None,
                    help="evaluate every n-th item of each set (default: the config's)")
    args = ap.parse_args()

    cfg = replace(MatrixConfig.quick() if args.quick else MatrixConfig(), threads=args.threads)
    if args.eval_stride is not None:
        cfg = replace(cfg, eval_stride=args.eval_stride)
    load_before = os.getloadavg()
    start = time.perf_counter()
    last = [""]

    def progress(phase: str, done: int, total: int, figures: dict) -> None:
        if phase != last[0] or done == total:
            print(f"[{time.perf_counter() - start:7.0f}s] {phase} {done}/{total}", flush=True)
            last[0] = phase

    result = run_matrix(args.out, args.base, cfg, progress)
    print((args.out / "matrix.md").read_text())
    bench = {
        "targets": result["targets"], "cost": result["cost"],
        "countermeasure": result["countermeasure"],
        "total_stage_seconds": result["total_stage_seconds"],
        "this_run_seconds": round(time.perf_counter() - start, 1),
        "stage_seconds": result["stage_seconds"],
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "threads": cfg.threads, "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    atomic_write_json(args.out / "safety_matrix_bench.json", bench)
    print(json.dumps({k: bench[k] for k in ("total_stage_seconds", "load_average_before",
                                            "load_average_after")}))
    print(f"wrote {args.out / 'safety_matrix_bench.json'}")


if __name__ == "__main__":
    main()
