"""Benign FPR on fresh organism traffic, with the bundle's thresholds and with thresholds
calibrated on a second fresh set at a low target (issue 13: 0.05% benign refusals).

    .venv/bin/python benchmarks/fresh_fpr.py --bundle runs/classifier/bundle --n 20000

Draws two sets of `--n` harmless organism conversations that are in no split of the
bundle's data (`recipes/organism/benign.py`), with different seeds: one to calibrate on
(seed --calibration-seed), one to measure on (the default benign seed, or
--measurement-seed), from which every conversation also in the first is dropped. For the
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


def fresh_sets(bundle_dir: Path, bundle: Any, n: int, seed: int, out: Path,
               measurement_seed: int | None = None) -> tuple[Any, Any, list[int]]:
    """(calibration set, measurement set, indices of the measurement set not in the
    calibration set)."""
    from swisscheese.recipes.organism.benign import DEFAULT_SEED, benign_traffic
    from swisscheese.recipes.organism.evaluate import resolve_data_dir

    data = resolve_data_dir(bundle_dir, bundle, None)
    cal = benign_traffic(data, bundle.constitution, n, out / "calibration", seed=seed)
    ev = benign_traffic(data, bundle.constitution, n, out / "measurement",
                        seed=DEFAULT_SEED if measurement_seed is None else measurement_seed)
    seen = {r.key for r in cal.records}
    return cal, ev, [i for i, r in enumerate(ev.records) if r.key not in seen]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("runs/classifier/bundle"))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--target-fpr", type=float, default=0.0005)
    ap.add_argument("--calibration-seed", type=int, default=CALIBRATION_SEED)
    ap.add_argument("--measurement-seed", type=int, default=None, help=(
        "seed of the measurement set (default: the benign traffic's own); another one "
        "draws a set that no earlier run has looked at, to confirm a threshold chosen "
        "after looking at the default set"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-fresh-fpr"))
    args = ap.parse_args()
    if not (args.bundle / "bundle.json").is_file():
        print(f"error: no bundle in {args.bundle}", file=sys.stderr)
        return 1
    from swisscheese.bundles import load_bundle
    from swisscheese.bundles.build import calibrate
    from swisscheese.fileio import atomic_write_json
    from swisscheese.recipes.organism.train import prompt_texts

    load0, t0 = os.getloadavg()[0], time.perf_counter()
    bundle = load_bundle(args.bundle)
    cal, ev, keep = fresh_sets(args.bundle, bundle, args.n, args.calibration_seed, args.out,
                               args.measurement_seed)
    harm = harmful_test(args.bundle)
    write_benign_jsonl(cal, args.out / "calibration.jsonl")
    print(f"calibration {len(cal.records)}, measurement {len(keep)} (of {len(ev.records)}: "
          "the rest are also in the calibration set)", flush=True)
    ev_prompts = prompt_texts(ev.records)
    s_ev = bundle.input_scores([ev_prompts[i] for i in keep])
    s_h = bundle.input_scores(harm["prompts"])
    c_in = bundle.input_scores(prompt_texts(cal.records))
    t_in = calibrate(c_in, args.target_fpr, "input")
    rows = layer_rows("input", bundle.thresholds["input"], t_in, s_ev,
                      lambda t: rate((s_h >= t)[harm["trained"]]))
    idx = [i for i, r in enumerate(harm["replies"]) if r is not None]
    o_h = output_scores(bundle, [harm["replies"][i] for i in idx],
                        [harm["convs"][i] for i in idx])
    o_ev = output_scores(bundle, [ev.replies[i] for i in keep],
                         [ev.conversations[i] for i in keep])
    c_out = output_scores(bundle, cal.replies, cal.conversations)
    t_out = calibrate(c_out, args.target_fpr, "output")
    rows |= layer_rows("output", bundle.thresholds["output"], t_out, o_ev,
                       lambda t: rate(o_h >= t))
    rows |= guarded_rows(bundle.thresholds, (c_in, c_out), args.target_fpr,
                         (s_ev, o_ev), (s_h, o_h, np.array(idx)), harm["trained"])
    t_split = rows["guarded @ fresh, target split"]["threshold"]
    flagged = flagged_rows(ev, keep, (s_ev, o_ev), t_split)
    for name, r in rows.items():
        f, h = r["fpr"], r["harmful_flagged"]
        t = r["threshold"]
        ts = "/".join(f"{x:.5f}" for x in t) if isinstance(t, list) else f"{t:.5f}"
        print(f"{name:30s} t={ts}  FPR {f['rate']:.5f} "
              f"({f['ci95'][0]:.5f}-{f['ci95'][1]:.5f}, n {f['n']})  "
              f"harmful flagged {h['rate']:.4f} (n {h['n']})"
              + (f", all families {r['harmful_flagged_all']['rate']:.4f}"
                 if "harmful_flagged_all" in r else ""))
    atomic_write_json(args.out / "fresh_fpr.json", {
        "bundle": str(args.bundle), "target_fpr": args.target_fpr, "rows": rows,
        "measurement_seed": args.measurement_seed,
        "n_calibration": len(cal.records), "n_measurement": len(keep),
        "flagged_at_fresh_split": flagged,
        "seconds": round(time.perf_counter() - t0),
        "load_average_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])})
    print(f"wrote {args.out / 'fresh_fpr.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
