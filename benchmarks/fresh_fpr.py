"""Benign FPR on fresh organism traffic, with the bundle's thresholds and with thresholds
calibrated on a second fresh set at a low target (issue 13: 0.05% benign refusals).

    .venv/bin/python benchmarks/fresh_fpr.py --bundle runs/classifier/bundle --n 20000

    python benchmarks/fresh_fpr.py --bundle B --measurement-seed 4242 9001 --target-fpr .0005 .0003

Draws sets of `--n` harmless organism conversations that are in no split of the bundle's
data (`recipes/organism/benign.py`), with different seeds: one to calibrate on (seed
--calibration-seed), and one or more to measure on (the default benign seed, or each of
--measurement-seed), from each of which every conversation also in the first is dropped.
The calibration set and the harmful test records are scored once for all the measurement
sets and targets (`runs` in the JSON: one entry per seed and target). For the
input layer (the rendered conversation) and the output layer (the world's harmless reply
streamed after it), with the bundle's own thresholds and with thresholds calibrated on
the first set at --target-fpr, it reports: the FPR on the measurement set with a 95%
Clopper-Pearson interval, the input TPR on the data's harmful test prompts of trained
families, and the share of the world's harmful test replies the output layer flags; and
both layers together (fully guarded: refused if either flags), with the bundle's
thresholds and with the budget split evenly between the layers. Prints a table and writes
OUT/fresh_fpr.json (with every conversation refused at the split thresholds:
`flagged_at_fresh_split`), and the calibration set as OUT/calibration.jsonl (what
`swisscheese classifier calibrate --benign` reads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guard_cost import harmful_test, rate  # noqa: E402

CALIBRATION_SEED = 1234


def fresh_set(bundle_dir: Path, bundle: Any, n: int, seed: int | None, out: Path) -> Any:
    """`n` harmless organism conversations in no split of the bundle's data, drawn with
    `seed` (None: the benign traffic's own default seed)."""
    from swisscheese.recipes.organism.benign import DEFAULT_SEED, benign_traffic
    from swisscheese.recipes.organism.evaluate import resolve_data_dir

    data = resolve_data_dir(bundle_dir, bundle, None)
    return benign_traffic(data, bundle.constitution, n, out,
                          seed=DEFAULT_SEED if seed is None else seed)


def write_benign_jsonl(traffic: Any, path: Path) -> None:
    """The calibration set in `classify`'s input format (messages and response), the file
    `swisscheese classifier calibrate --benign` reads."""
    import json

    from swisscheese.fileio import atomic_write_text

    atomic_write_text(path, "".join(
        json.dumps({"messages": c, "response": r}, ensure_ascii=False) + "\n"
        for c, r in zip(traffic.conversations, traffic.replies, strict=True)))


def output_scores(bundle: Any, replies: list[str], convs: list[Any]) -> np.ndarray:
    from swisscheese.bundles.build import stream_scores

    return stream_scores(bundle.output, replies, convs, bundle.stream_chunk_chars, None, "")


def layer_rows(name: str, t_bundle: float, t_fresh: float, benign: np.ndarray,
               flagged_harm: Any) -> dict[str, dict[str, Any]]:
    """Per threshold: FPR on the measurement set and what it catches of the harmful."""
    return {f"{name} @ {label}": {"threshold": t, "fpr": rate(benign >= t),
                                  "harmful_flagged": flagged_harm(t)}
            for label, t in (("bundle", t_bundle), ("fresh", t_fresh))}


def flagged_rows(ev: Any, keep: list[int], scores: tuple[np.ndarray, np.ndarray],
                 thresholds: list[float]) -> list[dict[str, Any]]:
    """The measurement conversations refused fully guarded at the fresh thresholds: which
    layer, the record's family and category, the request and the reply (false positives
    come in clusters of one craft, so the list says more than their count)."""
    out = []
    for j, i in enumerate(keep):
        layers = [name for name, s, t in zip(("input", "output"), scores, thresholds,
                                              strict=True) if s[j] >= t]
        if layers:
            r = ev.records[i]
            out.append({"layers": layers, "family": r.family, "category": r.category,
                        "scores": [round(float(scores[0][j]), 5),
                                   round(float(scores[1][j]), 5)],
                        "request": ev.conversations[i][-1]["content"][:300],
                        "reply": ev.replies[i][:300]})
    return out


def guarded_rows(bundle_t: dict[str, float], cal: tuple[np.ndarray, np.ndarray],
                 target: float, benign: tuple[np.ndarray, np.ndarray],
                 harm: tuple[np.ndarray, np.ndarray, np.ndarray], trained: np.ndarray
                 ) -> dict[str, dict[str, Any]]:
    """Both layers together: a benign conversation is refused when its input or its reply
    is flagged; a harmful test record (trained families) is caught when its prompt is, or
    its reply (where the world has one) is stopped. Fresh thresholds split the FPR budget
    evenly between the layers (calibrated on the calibration set at target / 2 each), a
    rule that needs no harmful data."""
    from swisscheese.bundles.recalibrate import split_thresholds

    t_in, t_out = split_thresholds(cal[0], cal[1], target)  # what `classifier calibrate` does
    assert t_out is not None  # an even split always leaves the output layer a budget
    pairs = {"bundle": (bundle_t["input"], bundle_t["output"]),
             "fresh, target split": (t_in, t_out)}
    s_h, o_h, idx = harm
    out = {}
    for label, (ti, to) in pairs.items():
        caught = s_h >= ti
        caught[idx] |= o_h >= to
        out[f"guarded @ {label}"] = {
            "threshold": [ti, to], "fpr": rate((benign[0] >= ti) | (benign[1] >= to)),
            "harmful_flagged": rate(caught[trained]), "harmful_flagged_all": rate(caught)}
    return out


def _print_rows(rows: dict[str, dict[str, Any]]) -> None:
    for name, r in rows.items():
        f, h = r["fpr"], r["harmful_flagged"]
        t = r["threshold"]
        ts = "/".join(f"{x:.5f}" for x in t) if isinstance(t, list) else f"{t:.5f}"
        print(f"{name:30s} t={ts}  FPR {f['rate']:.5f} "
              f"({f['ci95'][0]:.5f}-{f['ci95'][1]:.5f}, n {f['n']})  "
              f"harmful flagged {h['rate']:.4f} (n {h['n']})"
              + (f", all families {r['harmful_flagged_all']['rate']:.4f}"
                 if "harmful_flagged_all" in r else ""))


class Scored:
    """The bundle's scores on the calibration set and the harmful test records, computed
    once and shared by every measurement set and target."""

    def __init__(self, bundle_dir: Path, bundle: Any, cal: Any) -> None:
        from swisscheese.recipes.organism.train import prompt_texts

        self.bundle, self.harm = bundle, harmful_test(bundle_dir)
        self.s_h = bundle.input_scores(self.harm["prompts"])
        self.c_in = bundle.input_scores(prompt_texts(cal.records))
        self.idx = [i for i, r in enumerate(self.harm["replies"]) if r is not None]
        self.o_h = output_scores(bundle, [self.harm["replies"][i] for i in self.idx],
                                 [self.harm["convs"][i] for i in self.idx])
        self.c_out = output_scores(bundle, cal.replies, cal.conversations)

    def rows(self, target: float, s_ev: np.ndarray, o_ev: np.ndarray
             ) -> dict[str, dict[str, Any]]:
        from swisscheese.bundles.build import calibrate

        b, harm = self.bundle, self.harm
        rows = layer_rows("input", b.thresholds["input"], calibrate(self.c_in, target, "input"),
                          s_ev, lambda t: rate((self.s_h >= t)[harm["trained"]]))
        rows |= layer_rows("output", b.thresholds["output"],
                           calibrate(self.c_out, target, "output"), o_ev,
                           lambda t: rate(self.o_h >= t))
        return rows | guarded_rows(b.thresholds, (self.c_in, self.c_out), target,
                                   (s_ev, o_ev), (self.s_h, self.o_h, np.array(self.idx)),
                                   harm["trained"])


def measure(args: argparse.Namespace, scored: Scored, cal: Any, seed: int | None
            ) -> list[dict[str, Any]]:
    """Every target's rows on the measurement set drawn with `seed`."""
    from swisscheese.recipes.organism.train import prompt_texts

    bundle = scored.bundle
    ev = fresh_set(args.bundle, bundle, args.n, seed,
                   args.out / ("measurement" if seed is None else f"measurement-{seed}"))
    seen = {r.key for r in cal.records}
    keep = [i for i, r in enumerate(ev.records) if r.key not in seen]
    print(f"measurement seed {seed}: {len(keep)} of {len(ev.records)} (the rest are also "
          "in the calibration set)", flush=True)
    ev_prompts = prompt_texts(ev.records)
    s_ev = bundle.input_scores([ev_prompts[i] for i in keep])
    o_ev = output_scores(bundle, [ev.replies[i] for i in keep],
                         [ev.conversations[i] for i in keep])
    runs = []
    for target in args.target_fpr:
        rows = scored.rows(target, s_ev, o_ev)
        print(f"-- measurement seed {seed}, target FPR {target}")
        _print_rows(rows)
        t_split = rows["guarded @ fresh, target split"]["threshold"]
        runs.append({"measurement_seed": seed, "target_fpr": target,
                     "n_measurement": len(keep), "rows": rows,
                     "flagged_at_fresh_split": flagged_rows(ev, keep, (s_ev, o_ev), t_split)})
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("runs/classifier/bundle"))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--target-fpr", type=float, nargs="+", default=[0.0005],
                    help="one or more targets, each calibrated on the same calibration set")
    ap.add_argument("--calibration-seed", type=int, default=CALIBRATION_SEED)
    ap.add_argument("--measurement-seed", type=int, nargs="+", default=[None], help=(
        "seeds of the measurement sets (default: the benign traffic's own); another one "
        "draws a set that no earlier run has looked at, to confirm a threshold chosen "
        "after looking at the default set"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-fresh-fpr"))
    args = ap.parse_args()
    if not (args.bundle / "bundle.json").is_file():
        print(f"error: no bundle in {args.bundle}", file=sys.stderr)
        return 1
    from swisscheese.bundles import load_bundle
    from swisscheese.fileio import atomic_write_json

    load0, t0 = os.getloadavg()[0], time.perf_counter()
    bundle = load_bundle(args.bundle)
    cal = fresh_set(args.bundle, bundle, args.n, args.calibration_seed,
                    args.out / "calibration")
    write_benign_jsonl(cal, args.out / "calibration.jsonl")
    print(f"calibration {len(cal.records)} (seed {args.calibration_seed})", flush=True)
    scored = Scored(args.bundle, bundle, cal)
    runs = [r for seed in args.measurement_seed for r in measure(args, scored, cal, seed)]
    atomic_write_json(args.out / "fresh_fpr.json", {
        "bundle": str(args.bundle), "n_calibration": len(cal.records),
        "calibration_seed": args.calibration_seed, "runs": runs,
        "seconds": round(time.perf_counter() - t0),
        "load_average_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])})
    print(f"wrote {args.out / 'fresh_fpr.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
