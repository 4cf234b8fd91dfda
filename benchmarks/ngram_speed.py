"""Scoring speed of the n-gram classifier on one thread: prompts per second.

    python benchmarks/ngram_speed.py                        # about 5 s in all
    python benchmarks/ngram_speed.py --seconds 1 --json runs/bench/ngram_speed.json

Prompts are the world's attacks in every family, its look-alikes and its utility tasks.
Four figures: batch scoring (one `score` call per pass over all prompts), one prompt per
`score` call (a gateway's latency path), and streaming characters per second, reply-only
and as the exchange classifier (the reply after its conversation, as the organism bundle's
output layer reads it).
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
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from swisscheese.classifiers.backends.ngram_stream import NGramStreamingClassifier  # noqa: E402
from swisscheese.world import World  # noqa: E402
from swisscheese.world.families import FAMILIES  # noqa: E402


def world_prompts(seed: int) -> tuple[list[str], np.ndarray]:
    w = World(seed=seed)
    harmful = [e.prompt for fam in FAMILIES for e in w.eval_attacks(fam)]
    benign = [e.prompt for e in w.eval_lookalikes()] + [e.prompt for e in w.eval_utility()]
    return harmful + benign, np.array([1] * len(harmful) + [0] * len(benign))


def timed(fn: Callable[[], int], seconds: float) -> float:
    """Units per second of `fn` (which returns how many units it did), run for ~seconds."""
    fn()  # warm-up: lazy tables, caches
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    ap.add_argument("--json", type=Path, default=Path("runs/bench/ngram_speed.json"),
                    help="where to write the figures")
    args = ap.parse_args()

    texts, labels = world_prompts(args.seed)
    t0 = time.perf_counter()
    clf = NGramStreamingClassifier(epochs=3).fit(texts, labels)  # speed needs no accuracy
    fit_s = time.perf_counter() - t0

    def batch() -> int:
        clf.predict_proba(texts)
        return len(texts)

    def one_by_one() -> int:
        for t in texts[:200]:
            clf.predict_proba([t])
        return 200

    reply = " ".join(texts[:40])
    exchange = NGramStreamingClassifier(epochs=3, context="exchange").fit_exchanges(
        [[{"role": "user", "content": t}] for t in texts[::-1]], texts, labels)
    conversation = [{"role": "user", "content": texts[-1]}]

    def streamer(c: NGramStreamingClassifier, conv: list[dict[str, str]] | None
                 ) -> Callable[[], int]:
        def stream() -> int:
            state = c.start(conv)
            for i in range(0, len(reply), 4):  # about one token per delta
                c.update(state, reply[i:i + 4])
            return len(reply)
        return stream

    result = {
        "benchmark": "ngram_speed",
        "prompts": len(texts),
        "mean_prompt_chars": float(np.mean([len(t) for t in texts])),
        "config": {"char_ngrams": clf.config.char_ngrams, "word_ngrams": clf.config.word_ngrams,
                   "buckets_log2": clf.config.buckets_log2},
        "fit_seconds": fit_s,
        "prompts_per_second": timed(batch, args.seconds),
        "prompts_per_second_one_per_call": timed(one_by_one, args.seconds),
        "stream_chars_per_second": timed(streamer(clf, None), args.seconds),
        "stream_exchange_chars_per_second": timed(streamer(exchange, conversation),
                                                  args.seconds),
        "threads": 1,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
    }
    print(f"n-gram classifier, 1 thread, {result['prompts']} world prompts "
          f"(mean {result['mean_prompt_chars']:.0f} chars)")
    print(f"  batch scoring:          {result['prompts_per_second']:>10,.0f} prompts/s")
    print(f"  one prompt per call:    {result['prompts_per_second_one_per_call']:>10,.0f} "
          "prompts/s")
    for kind, key in (("reply-only", "stream_"), ("exchange", "stream_exchange_")):
        cps = result[f"{key}chars_per_second"]
        print(f"  streaming, {kind:10s} (4-char deltas): {cps:>9,.0f} chars/s "
              f"({4e6 / cps:.1f} us per delta)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
