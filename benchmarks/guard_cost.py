"""Guard cost: stage 1 alone, stage 2 alone, the two-stage cascade and the ensemble, side
by side on the same organism data (issue 13).

    .venv/bin/python benchmarks/guard_cost.py --out runs/bench-cost --n-benign 20000

Trains (or reuses, if OUT/ARM/bundle exists) one organism bundle per arm from the same
data: `stage1` (the default bundle's input classifier: the n-gram behind the decoders),
`stage2` (--stage2, default the cascade's default stage 2, options by --stage2-param
KEY=VALUE), `cascade` (stage 1 screening, --stage2 on what it escalates) and `ensemble`
(both, stacked); every arm keeps the default exchange n-gram
output classifier, so the arms differ in the input layer only. Then it draws --n-benign
organism conversations that are in no split of the data (recipes/organism/benign.py) and
measures, per arm:

- input compute per 1,000 benign conversations (wall ms, one process, batches of 256,
  torch on --threads threads) and, for the cascade, the share of them stage 2 scored;
- input TPR on the data's harmful test prompts of trained families (and of all families),
  with 95% Clopper-Pearson intervals;
- FPR on the benign set, input alone and fully guarded (input or output flags: the output
  layer scores the world's reply to each conversation), with 95% intervals;
- fully guarded TPR: harmful test conversations refused by either layer (the output layer
  on the world's answer).

With --cascade-shares, the cascade arm is measured again at each benign escalation share:
its escalation threshold reset on the val split (the same harmful recall, at least that
share of val benign prompts escalated) and its input threshold recalibrated there, so the
compute-for-TPR trade is read off one trained stage 2 without touching the test split.

Prints a table and writes OUT/guard_cost.json. Wall times mean something only on a quiet
machine: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 256
ARMS = ("stage1", "stage2", "cascade", "ensemble")


def interval(k: int, n: int) -> list[float | None]:
    """95% Clopper-Pearson interval of k successes in n."""
    from scipy.stats import beta

    if n == 0:
        return [None, None]
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return [lo, hi]


def rate(flags: np.ndarray) -> dict[str, Any]:
    k, n = int(flags.sum()), len(flags)
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": interval(k, n)}


def arm_configs(stage2: str | None, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """TrainConfig fields per arm (the output layer is the default in every arm). Stage 1
    is the default bundle's input backend (`DEFAULT_BACKEND`) wherever it appears; stage 2
    is `stage2` with `params`, or (None) the cascade's default stage 2 (an ensemble)."""
    from swisscheese.classifiers.backends.cascade import DEFAULT_STAGE2, CascadeClassifier
    from swisscheese.recipes.organism.train import DEFAULT_BACKEND, DEFAULT_INPUT_PARAMS

    name = stage2 or CascadeClassifier.defaults[1]
    s2_params = params if stage2 else {**DEFAULT_STAGE2, **params}
    cascade = {"stage1": DEFAULT_BACKEND, "stage1_params": DEFAULT_INPUT_PARAMS,
               "stage2": name, "stage2_params": s2_params}
    arms: dict[str, dict[str, Any]] = {
        "stage1": {},
        "stage2": {"backend": name, "input_params": s2_params,
                   "output_backend": "ngram-stream"},
        "cascade": {"backend": "cascade", "output_backend": "ngram-stream",
                    "input_params": cascade},
    }
    if name != "ensemble":  # an ensemble holds no ensemble
        arms["ensemble"] = {"backend": "ensemble", "output_backend": "ngram-stream",
                            "input_params": {"members": [DEFAULT_BACKEND, name],
                                             "members_params": [DEFAULT_INPUT_PARAMS,
                                                                s2_params]}}
    return arms


def train_arms(out: Path, arms: list[str], n_per_category: int, stage2: str | None,
               params: dict[str, Any]) -> dict[str, float | None]:
    """Train each arm's bundle unless it exists; returns training seconds (None: reused)."""
    from swisscheese.recipes.organism.train import TrainConfig, train_bundle

    seconds: dict[str, float | None] = {}
    data = out / "stage1" / "data"
    for arm in ["stage1", *[a for a in arms if a != "stage1"]]:
        if (out / arm / "bundle" / "bundle.json").is_file():
            seconds[arm] = None
            continue
        configs = arm_configs(stage2, params)
        if arm not in configs:
            raise SystemExit(f"arm {arm!r}: stage 2 is an ensemble, which an ensemble "
                             "cannot hold; drop it from --arms or pass --stage2 NAME")
        cfg = TrainConfig(n_per_category=n_per_category, **configs[arm])
        t = time.perf_counter()
        print(f"training {arm} ...", flush=True)
        train_bundle(out / arm, data_dir=None if arm == "stage1" else data, config=cfg,
                     overwrite=True)
        seconds[arm] = round(time.perf_counter() - t, 1)
        print(f"  {arm}: {seconds[arm]} s", flush=True)
    return seconds


def forget_embeddings(clf: Any) -> None:
    """Clear the embedding cache of every encoder in `clf` (members, wrapped bases): the
    process shares one encoder between bundles, so an arm timed after another would
    otherwise read the embeddings the first one computed."""
    for child in [*getattr(clf, "members", {}).values(), getattr(clf, "base", None)]:
        if child is not None:
            forget_embeddings(child)
    if hasattr(clf, "is_tuned") and hasattr(clf, "encoder"):
        clf.encoder.clear_cache()


def timed_input(bundle: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(scores, stages, wall seconds) of the input classifier over `texts` in batches, its
    encoders' caches cleared first."""
    from swisscheese.classifiers.base import predict_stages

    forget_embeddings(bundle.input)
    scores, stages = [], []
    t = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        s, st = predict_stages(bundle.input, texts[i:i + BATCH])
        scores.append(s)
        if st is not None:
            stages.append(st)
    wall = time.perf_counter() - t
    return np.concatenate(scores), (np.concatenate(stages) if stages else None), wall


def output_flags(bundle: Any, convs: list[Any], replies: list[str]) -> tuple[np.ndarray, float]:
    """Whether the output layer flags each reply after its conversation, and wall seconds."""
    t = time.perf_counter()
    flags = np.array([bundle.flag_output(bundle.output_score(r, c))
                      for c, r in zip(convs, replies, strict=True)], dtype=bool)
    return flags, time.perf_counter() - t


def harmful_test(bundle_dir: Path) -> dict[str, Any]:
    """The data's harmful test records (all, and of families the input trained on), their
    prompts, and the world's harmful reply to each where it has one."""
    from swisscheese.bundles import load_bundle
    from swisscheese.data.generate import load_dataset, read_manifest
    from swisscheese.recipes.organism.evaluate import resolve_data_dir, world_for
    from swisscheese.recipes.organism.replies import replies_of
    from swisscheese.recipes.organism.train import prompt_texts

    bundle = load_bundle(bundle_dir)
    data = resolve_data_dir(bundle_dir, bundle, None)
    manifest = read_manifest(data)
    held = set(manifest.get("heldout_converters", [])) | set(
        bundle.metrics["input"].get("heldout_of_input", []))
    recs = [r for r in load_dataset(data)["test"] if r.label == 1]
    world = world_for(manifest, bundle)
    replies = {tuple(m["content"] for m in x.conversation): x
               for x in replies_of(world, bundle.constitution, recs, 1) if x.label == 1}
    pairs = [replies.get(tuple(m["content"] for m in r.messages)) for r in recs]
    return {"prompts": prompt_texts(recs),
            "trained": np.array([not (r.heldout_family or r.family in held) for r in recs]),
            "convs": [None if x is None else list(x.conversation) for x in pairs],
            "replies": [None if x is None else x.text(world) for x in pairs]}


def measure(bundle: Any, benign: dict[str, Any], harm: dict[str, Any],
            out_flags: dict[str, np.ndarray]) -> dict[str, Any]:
    """One arm's figures (see the module docstring)."""
    s_b, stages, wall = timed_input(bundle, benign["prompts"])
    s_h, _, _ = timed_input(bundle, harm["prompts"])
    f_b, f_h = bundle.flag_input(s_b), bundle.flag_input(s_h)
    full_b = f_b | out_flags["benign"]
    full_h = f_h | out_flags["harmful"]
    n = len(benign["prompts"])
    row = {"input_ms_per_1000": round(1000 * wall * 1000 / n, 1),
           "threshold": bundle.thresholds["input"],
           "tpr_trained": rate(f_h[harm["trained"]]), "tpr_all": rate(f_h),
           "fpr_input": rate(f_b), "fpr_fully_guarded": rate(full_b),
           "tpr_fully_guarded_trained": rate(full_h[harm["trained"]]),
           "tpr_fully_guarded_all": rate(full_h)}
    if stages is not None:
        row["stage2_share_benign"] = float(np.mean(stages == 2))
        row["escalate_at"] = float(bundle.input.escalate_at)
    return row


def val_prompts(data: Path) -> tuple[list[str], list[str]]:
    """(benign, harmful) prompts of the arms' data's val split: what the bundles were
    calibrated on, never the test split the figures are measured on."""
    from swisscheese.data.generate import load_dataset
    from swisscheese.recipes.organism.train import prompt_texts

    val = load_dataset(data)["val"]
    return (prompt_texts([r for r in val if r.label == 0]),
            prompt_texts([r for r in val if r.label == 1]))


def recalibrated(bundle: Any, share: float, val: tuple[list[str], list[str]],
                 recall: float | None = None) -> Any:
    """The cascade bundle with its escalation threshold set for benign escalation `share`
    and harmful `recall` (default: the bundle's) on the val split, and its input threshold
    recalibrated there as `classifier train` would; stage 2 is the one trained, unchanged."""
    from swisscheese.bundles.build import calibrate
    from swisscheese.classifiers.backends.cascade import escalation_at

    clf = bundle.input
    benign, harmful = val
    s1_b, s1_h = clf.stage1.predict_proba(benign), clf.stage1.predict_proba(harmful)
    recall = clf.settings["escalate_recall"] if recall is None else recall
    clf.escalate_at = escalation_at(s1_h, s1_b, recall, share)
    bundle.thresholds["input"] = calibrate(clf.predict_proba(benign), bundle.target_fpr,
                                           "input")
    return bundle


def share_sweep(out: Path, shares: list[float], bench: dict[str, Any],
                harm: dict[str, Any], output: dict[str, Any], recall: float | None = None
                ) -> dict[str, dict[str, Any]]:
    """The cascade arm measured again at each benign escalation share (set on val)."""
    from swisscheese.bundles import load_bundle

    val = val_prompts(out / "stage1" / "data")  # every arm trains on stage 1's data
    rows = {}
    tag = "" if recall is None else f",r{recall:g}"
    for share in shares:
        bundle = recalibrated(load_bundle(out / "cascade" / "bundle"), share, val, recall)
        rows[f"cascade@{share:g}{tag}"] = measure(bundle, bench, harm, output) | {
            "escalate_share": share, "escalate_recall": recall}
        print(f"measured cascade at escalation share {share:g}", flush=True)
    return rows


def shared_output(bundle: Any, benign: Any, harm: dict[str, Any]) -> dict[str, Any]:
    """The output layer's flags on the benign replies and the harmful ones (the same
    output classifier in every arm), with its cost per 1,000 benign replies."""
    f_b, wall = output_flags(bundle, benign.conversations, benign.replies)
    idx = [i for i, r in enumerate(harm["replies"]) if r is not None]
    f_h = np.zeros(len(harm["replies"]), dtype=bool)
    got, _ = output_flags(bundle, [harm["convs"][i] for i in idx],
                          [harm["replies"][i] for i in idx])
    f_h[idx] = got
    return {"benign": f_b, "harmful": f_h,
            "ms_per_1000": round(1000 * wall * 1000 / len(benign.replies), 1),
            "fpr_output": rate(f_b), "harmful_replies": len(idx)}


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per cascade row: its compute over stage 2's, and stage 2's TPR minus its own."""
    s2 = rows["stage2"]
    return {"cascade_compute_ratio": {
                k: round(r["input_ms_per_1000"] / s2["input_ms_per_1000"], 4)
                for k, r in rows.items() if k.startswith("cascade")},
            "cascade_tpr_gap": {
                k: round(s2["tpr_trained"]["rate"] - r["tpr_trained"]["rate"], 4)
                for k, r in rows.items() if k.startswith("cascade")}}


def parse_params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def print_table(rows: dict[str, dict[str, Any]], output: dict[str, Any]) -> None:
    def pct(r: dict[str, Any]) -> str:
        hi = r["ci95"][1]
        return f"{r['rate']:.4f} (<= {hi:.4f})" if r["rate"] is not None else "-"

    print(f"{'arm':17s} {'ms/1000':>9s} {'stage2':>7s} {'TPR':>7s} {'TPR full':>9s} "
          f"{'FPR input (95% hi)':>22s} {'FPR full (95% hi)':>22s}")
    for arm, r in rows.items():
        share = r.get("stage2_share_benign")
        print(f"{arm:17s} {r['input_ms_per_1000']:9.1f} "
              f"{'' if share is None else f'{share:.3f}':>7s} "
              f"{r['tpr_trained']['rate']:7.4f} {r['tpr_fully_guarded_trained']['rate']:9.4f} "
              f"{pct(r['fpr_input']):>22s} {pct(r['fpr_fully_guarded']):>22s}")
    print(f"output layer (every arm): {output['ms_per_1000']} ms per 1,000 replies, "
          f"FPR {pct(output['fpr_output'])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-cost"))
    ap.add_argument("--n-benign", type=int, default=20_000)
    ap.add_argument("--n-per-category", type=int, default=400)
    ap.add_argument("--stage2", default=None,
                    help="stage 2 backend (default: the cascade's default stage 2, the "
                         "ensemble of the decoding n-gram and the MiniLM encoder)")
    ap.add_argument("--stage2-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--arms", nargs="+", default=["stage1", "stage2", "cascade"],
                    choices=ARMS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cascade-shares", type=float, nargs="*", default=[],
                    metavar="SHARE", help="also measure the cascade with its escalation "
                    "threshold reset (on the val split) to each benign share, e.g. 0.02 0")
    ap.add_argument("--cascade-recall", type=float, default=None, metavar="RECALL",
                    help="with --cascade-shares: the share of val harmful prompts that must "
                    "escalate (default: the bundle's escalate_recall)")
    args = ap.parse_args()
    import torch

    from swisscheese.bundles import load_bundle
    from swisscheese.fileio import atomic_write_json
    from swisscheese.recipes.organism.benign import benign_traffic
    from swisscheese.recipes.organism.train import prompt_texts

    torch.set_num_threads(args.threads)
    params = parse_params(args.stage2_param)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    train_s = train_arms(args.out, args.arms, args.n_per_category, args.stage2, params)
    first = load_bundle(args.out / "stage1" / "bundle")
    benign = benign_traffic(args.out / "stage1" / "data", first.constitution, args.n_benign,
                            args.out / "benign")
    bench = {"prompts": prompt_texts(benign.records)}
    harm = harmful_test(args.out / "stage1" / "bundle")
    output = shared_output(first, benign, harm)
    rows = {}
    for arm in args.arms:
        bundle = load_bundle(args.out / arm / "bundle")
        if bundle.thresholds["output"] != first.thresholds["output"]:
            raise SystemExit(f"{arm}: its output layer differs from stage1's; the arms "
                             "must share one")
        rows[arm] = measure(bundle, bench, harm, output) | {"train_s": train_s.get(arm)}
        print(f"measured {arm}", flush=True)
    if "cascade" in args.arms and args.cascade_shares:
        rows |= share_sweep(args.out, args.cascade_shares, bench, harm, output,
                            args.cascade_recall)
    print_table(rows, output)
    result = {"arms": rows, "output": {k: v for k, v in output.items()
                                       if k not in ("benign", "harmful")},
              "n_benign": len(benign.records), "benign_families": benign.families,
              "benign_seen_dropped": benign.seen_dropped, "stage2": args.stage2,
              "stage2_params": params, "threads": args.threads,
              "seconds": round(time.perf_counter() - t0),
              "load_average_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
              "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    if "stage2" in rows:
        result |= ratios(rows)
    atomic_write_json(args.out / "guard_cost.json", result)
    print(f"wrote {args.out / 'guard_cost.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
