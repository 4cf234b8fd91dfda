"""A campaign on local Ray against the in-process run: the same attempts and summary,
and attempts per minute with 1 and 2 Ray workers (actors, one copy of the targets each).

    python benchmarks/redteam_ray.py                  # ~5 min on 2 cores
    python benchmarks/redteam_ray.py --workers 1 2 4

The organism is runs/demo/organism when it exists, else the `test` preset trained once
into runs/bench/fleet/organism. On a 2-core machine the two actors share the two cores
with the driver, so 2 workers can at best double the rate of 1; a cluster with more
cores or GPUs per actor is where `--ray` pays. Writes runs/bench/redteam_ray.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

CONFIG = """\
name: ray-bench
base: {base}
behaviours:
  - world: levels
  - world: hazards
    limit: 40
attacks:
  - name: plain
    options: {{max_new_tokens: 64}}
  - name: mismatched_generalization
    options: {{families: [rot13, caesar, reversal, other_language], max_new_tokens: 64}}
targets: [aligned, helpful-only]
overrefusal: 16
batch_size: 4
threads: 1
"""


def organism() -> Path:
    demo = Path("runs/demo/organism")
    if (demo / "aligned").is_dir() and (demo / "helpful-only").is_dir():
        return demo
    org = Path("runs/bench/fleet/organism")
    if not (org / "aligned").is_dir():
        from swisscheese.organism.train import train_organism

        print("training the test organism into", org, flush=True)
        train_organism(org, "test", seed=0)
    return org


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, default=Path("runs/bench/redteam_ray.json"))
    args = ap.parse_args()

    from swisscheese.fileio import atomic_write_json
    from swisscheese.raycluster import connect
    from swisscheese.redteam.campaign import RayOptions, comparable, run_campaign
    from swisscheese.redteam.config import load_config

    base = organism()
    tmp = Path(tempfile.mkdtemp(prefix="redteam-ray-"))
    config = tmp / "campaign.yaml"
    config.write_text(CONFIG.format(base=base.resolve()))

    def lines(run: Path) -> list[dict]:
        return comparable([json.loads(x) for x in
                           (run / "attempts.jsonl").read_text().splitlines()])

    load0 = os.getloadavg()[0]
    here = run_campaign(load_config(config), tmp / "in-process")
    runs = {"in_process": {"attempts": here.new, "seconds": round(here.seconds, 1),
                           "attempts_per_min": round(here.per_minute, 1)}}
    t = time.perf_counter()
    connect(None, num_cpus=os.cpu_count() or 2)
    ray_start = time.perf_counter() - t
    same = True
    for n in args.workers:
        out = tmp / f"ray-{n}"
        r = run_campaign(load_config(config), out, ray=RayOptions(workers=n))
        identical = lines(out) == lines(tmp / "in-process") and r.summary == here.summary
        same = same and identical
        runs[f"ray_{n}_workers"] = {"attempts": r.new, "seconds": round(r.seconds, 1),
                                    "attempts_per_min": round(r.per_minute, 1),
                                    "same_attempts_and_summary": identical}
    result = {"organism": str(base), "attempts_planned": here.attempts,
              "cpus": os.cpu_count(), "ray_local_start_s": round(ray_start, 1),
              "runs": runs, "same_as_in_process": same,
              "load_average_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
              "note": "seconds include starting the actors and loading a model copy in each"}
    for k, v in result.items():
        print(f"{k:<28} {v}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
