"""Train the realworld guard bundle on ../shared/datasets, print its held-out figures against
the targets, and time it on CPU.

    python benchmarks/realworld_classifier.py --out runs/bench              # the encoder
    python benchmarks/realworld_classifier.py --out runs/bench --backend ngram
    python benchmarks/realworld_classifier.py --bundle runs/bench/realworld/bundle  # time only

Writes OUT/realworld/bundle (replaced) and OUT/realworld_classifier.json: every figure of
`metrics["realworld"]` (per benign and harmful source, output exchanges, categories,
converters), the targets met and missed, the training wall time, and the costs: input
latency per prompt on one core (p50/p95, each prompt embedded afresh, categories
included, as the gateway scores a prompt), batched throughput on two cores, the output
layer's cost per streamed piece of 4 characters (about a token) and per window read, and
the bundle's size (the encoder it names is counted apart: the package installs it once).
The load average before and after each phase is recorded: other jobs on the machine slow
every figure, so a timing is only comparable with the load it was taken under. The input
timing runs twice, side by side: in the runtime the encoder picked (ONNX Runtime where it
can, `classifiers/backends/encoder_onnx.py`) and in torch (`--no-torch-arm` skips the second).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from swisscheese.bundles import GuardBundle, load_bundle
from swisscheese.fileio import atomic_write_text
from swisscheese.recipes.realworld.data import load_realworld
from swisscheese.recipes.realworld.evaluate import REALWORLD_TARGETS, figure_lines
from swisscheese.recipes.realworld.replies import output_test_sets
from swisscheese.recipes.realworld.texts import DEFAULT_HELDOUT, RealWorldConfig
from swisscheese.recipes.realworld.train import train_realworld
from swisscheese.recipes.targets import check_targets


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _encoder(bundle: GuardBundle) -> Any:
    return getattr(bundle.input, "encoder", None)


def _clear(bundle: GuardBundle) -> None:
    enc = _encoder(bundle)
    if enc is not None:
        enc.clear_cache()


def time_input(bundle: GuardBundle, prompts: list[str], batch: int) -> dict[str, Any]:
    """p50/p95 ms per prompt on one core (fresh embeddings), then prompts/s batched on two."""
    import torch

    torch.set_num_threads(1)
    _clear(bundle)
    load0 = _load()
    ms = []
    for p in prompts:
        t = time.perf_counter()
        bundle.input_scores([p])
        bundle.category_scores([p])
        ms.append((time.perf_counter() - t) * 1000)
    load1 = _load()
    torch.set_num_threads(2)
    _clear(bundle)
    t = time.perf_counter()
    for s in range(0, len(prompts), batch):
        bundle.input_scores(prompts[s:s + batch])
        bundle.category_scores(prompts[s:s + batch])
    rate = len(prompts) / (time.perf_counter() - t)
    torch.set_num_threads(1)
    _clear(bundle)
    t = time.perf_counter()
    for s in range(0, len(prompts), batch):
        bundle.input_scores(prompts[s:s + batch])
        bundle.category_scores(prompts[s:s + batch])
    rate1 = len(prompts) / (time.perf_counter() - t)
    ms.sort()
    return {"n": len(prompts), "p50_ms_1core": statistics.median(ms),
            "p95_ms_1core": ms[int(0.95 * (len(ms) - 1))], "batched_per_s_2cores": rate,
            "batched_per_s_1core": rate1,
            "batch": batch, "load_before": load0, "load_mid": load1, "load_after": _load()}


def time_input_torch(path: Path, prompts: list[str], batch: int) -> dict[str, Any]:
    """`time_input` again with the encoder forced to torch (a fresh copy of the bundle)."""
    from swisscheese.classifiers.backends import encoder_model
    from swisscheese.classifiers.backends.encoder_onnx import RUNTIME_ENV

    old = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = "torch"
    encoder_model.forget_shared_encoders()  # the process's encoder decided its runtime already
    try:
        return time_input(load_bundle(path), prompts, batch)
    finally:
        encoder_model.forget_shared_encoders()
        if old is None:
            os.environ.pop(RUNTIME_ENV, None)
        else:
            os.environ[RUNTIME_ENV] = old


def time_output(bundle: GuardBundle, replies: list[str], convs: list[Any]) -> dict[str, Any]:
    """The output layer streamed piece by piece (4 characters, about a token), one core,
    no prefetch: ms per piece over whole replies, and the share of pieces that read a
    window."""
    import torch

    torch.set_num_threads(1)
    _clear(bundle)
    load0 = _load()
    clf, pieces, t_total = bundle.output, 0, 0.0
    for reply, conv in zip(replies, convs, strict=True):
        t = time.perf_counter()
        state = clf.start(conv)
        for i in range(0, len(reply), 4):
            state, _ = clf.update(state, reply[i:i + 4])
            pieces += 1
        clf.finish(state)
        t_total += time.perf_counter() - t
    chunk = getattr(clf.config, "chunk_tokens", None)
    return {"n_replies": len(replies), "pieces": pieces,
            "ms_per_piece_1core": t_total * 1000 / max(pieces, 1),
            "ms_per_reply_1core": t_total * 1000 / max(len(replies), 1),
            "chunk_tokens": chunk, "window_tokens": getattr(clf.config, "window_tokens", None),
            "load_before": load0, "load_after": _load()}


def bundle_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--bundle", type=Path, default=None,
                    help="time and report an existing bundle instead of training one")
    ap.add_argument("--datasets", type=Path, default=None,
                    help="default: ../shared/datasets next to the repository")
    ap.add_argument("--backend", default=RealWorldConfig.backend)
    ap.add_argument("--limit", type=int, default=None, help="rows per source (quick runs)")
    # A margin below the 1% goal: the calibration split is not the test split.
    ap.add_argument("--target-fpr", type=float, default=0.0075)
    ap.add_argument("--augment", type=int, default=RealWorldConfig.augment)
    ap.add_argument("--heldout", nargs="*", default=list(DEFAULT_HELDOUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embed-cache", type=Path, default=None,
                    help="an .npz of embeddings kept between runs (same figures, sooner)")
    ap.add_argument("--timing-n", type=int, default=300, help="prompts timed")
    ap.add_argument("--no-torch-arm", action="store_true",
                    help="skip timing the input layer again with the encoder in torch")
    ap.add_argument("--train-threads", type=int, default=1,
                    help="torch threads while training (on a machine other jobs load, one "
                         "thread each beats two that wait on each other)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.train_threads)
    wall, load_train = None, [_load()]
    if args.bundle is None:
        t0 = time.perf_counter()
        path = train_realworld(args.out / "realworld", args.datasets,
                               config=RealWorldConfig(augment=args.augment, limit=args.limit,
                                                      backend=args.backend),
                               target_fpr=args.target_fpr, heldout=args.heldout,
                               seed=args.seed, overwrite=True, embed_cache=args.embed_cache)
        wall = time.perf_counter() - t0
        load_train.append(_load())
    else:
        path = args.bundle
    b = load_bundle(path)
    figures = b.metrics["realworld"]
    rec = b.training
    print(f"realworld bundle: {path} (backend {b.input.name}, target FPR {b.target_fpr}, "
          f"seed {rec.seed}; trained in {wall or 0:.0f} s, load {load_train})")
    print(f"  test sizes: {json.dumps(figures['n'])}")
    width = max(len(label) for label, _ in figure_lines(figures))
    for label, value in figure_lines(figures):
        print(f"  {label:<{width}}  {value}")
    result_like = {"input": {**figures, "overrefusal": figures["xstest_safe_overrefusal"]}}
    targets = check_targets(result_like, targets=REALWORLD_TARGETS)
    print("targets:")
    for name, t in targets.items():
        print(f"  {'met ' if t['pass'] else 'MISS'} {name}: {t['value']} (goal {t['goal']})")

    data = load_realworld(rec.data.get("datasets_dir"), limit=rec.config.get("limit"),
                          seed=rec.seed)
    prompts = list(dict.fromkeys(data.test_benign + data.test_harmful))[:args.timing_n]
    timing = time_input(b, prompts, batch=64)
    enc = _encoder(b)
    timing["runtime"] = getattr(enc, "runtime", None)
    torch_timing = None
    if enc is not None and timing["runtime"] != "torch" and not args.no_torch_arm:
        torch_timing = time_input_torch(path, prompts, batch=64)
        print(f"input in torch (same prompts, side by side): p50 "
              f"{torch_timing['p50_ms_1core']:.1f} ms, p95 {torch_timing['p95_ms_1core']:.1f} "
              f"ms on 1 core; {torch_timing['batched_per_s_2cores']:.0f} prompts/s on 2 cores")
    ex, _ = output_test_sets(data, rec.seed)["alpaca"]
    stream = time_output(b, ex.replies[:40], ex.conversations[:40])
    size = bundle_size(path)
    enc_size = bundle_size(enc.path) if enc is not None and not str(enc.path).startswith(
        str(path)) else 0
    print(f"input ({timing['runtime']}): p50 {timing['p50_ms_1core']:.1f} ms, p95 "
          f"{timing['p95_ms_1core']:.1f} ms per prompt on 1 core; "
          f"{timing['batched_per_s_2cores']:.0f} prompts/s batched on 2 cores (load "
          f"{timing['load_before']} -> {timing['load_after']})")
    print(f"output: {stream['ms_per_piece_1core']:.2f} ms per 4-character piece, "
          f"{stream['ms_per_reply_1core']:.0f} ms per reply (chunk {stream['chunk_tokens']} "
          f"tokens, window {stream['window_tokens']}; load {stream['load_before']} -> "
          f"{stream['load_after']})")
    print(f"bundle: {size / 1e6:.2f} MB on disk, plus the {enc_size / 1e6:.1f} MB encoder it "
          "names (installed once by its package)")
    result = {
        "bundle": str(path), "figures": figures, "targets": targets,
        "counts": rec.data.get("counts"),
        "calibration": {"input": b.metrics["input"], "output": b.metrics["output"]},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train_wall_s": wall, "train_load": load_train, "input_timing": timing,
        "input_timing_torch": torch_timing,
        "output_timing": stream, "bundle_bytes": size, "encoder_bytes": enc_size,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    out = args.out / "realworld_classifier.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
