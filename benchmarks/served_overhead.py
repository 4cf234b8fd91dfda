"""Per-token overhead of the output layer on the real serving path: the served model's own
`stream` against `GuardedChatModel` over the same model, one arm per bundle, side by side.

    .venv/bin/python benchmarks/served_overhead.py --bundle ngram=runs/classifier/bundle \\
        --bundle probe=runs/cls-probe/bundle --out runs/bench-served

`benchmarks/streaming_overhead.py` times each classifier inside a hand-written decoding
loop; this one times what the gateway runs: `Guard.model_stream` (the hidden-state path
`HFChatModel.stream_hidden` when the bundle's output probe reads the served model, else
text deltas), `StreamGuard` with its hold-back and calm release, the bundle's output
classifier, and the released text. The input layer is off (its cost is per request, not
per token; `benchmarks/guard_cost.py` measures it), and every bundle's output threshold is
raised above 1 so that no reply stops early and every arm generates the same tokens.

Arms run interleaved prompt by prompt (A/B/C, A/B/C, ...), so load from elsewhere falls
on all alike; a figure is the median over rounds of the per-round ratio of wall time per
generated token to the unguarded arm's. The prompts are those of streaming_overhead.py
(look-alikes, recipes and hazard requests in the jailbreak families the aligned organism
answers at length). For text-path arms it also replays the unguarded model's recorded
deltas through the guard alone (no model between them): the guard's own cost per delta,
which end-to-end figures exceed where guard and model slow each other down. Writes
OUT/served_overhead.json.
"""

from __future__ import annotations

import os

# Before numpy and torch are imported: one core per process, as the figures say.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

NEVER = 1.5  # an output threshold no probability reaches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_overhead import _prompts  # noqa: E402


def parse_bundles(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--bundle takes NAME=PATH, got {item!r}")
        if name in out or name == "unguarded":
            raise SystemExit(f"--bundle name {name!r} is used twice or reserved")
        out[name] = Path(path)
    return out


def arms_for(model: Any, bundles: dict[str, Path], calm_below: float | None
             ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ChatModel of each arm, and what each guarded arm runs (classifier, path)."""
    from swisscheese.bundles import load_bundle
    from swisscheese.guard.pipeline import Guard, GuardedChatModel

    arms: dict[str, Any] = {"unguarded": model}
    info: dict[str, dict[str, Any]] = {}
    for name, path in bundles.items():
        bundle = load_bundle(path)
        bundle.thresholds["output"] = NEVER
        guard = Guard(bundle, input_layer=False, calm_below=calm_below)
        arms[name] = GuardedChatModel(model, guard)
        info[name] = {"bundle": str(path), "output": bundle.output.name,
                      "context": getattr(bundle.output, "output_context", "reply"),
                      "hidden_state_path": guard.hidden_layers(model) is not None}
    return arms, info


def run(chat: Any, prompt: str, params: Any) -> tuple[int, float]:
    """(generated tokens, wall seconds) of one streamed reply, consumed to the end."""
    t = time.perf_counter()
    text = "".join(chat.stream(prompt, params))
    wall = time.perf_counter() - t
    return len(text), wall


def measure(arms: dict[str, Any], prompts: list[str], rounds: int, params: Any,
            count: Any) -> dict[str, list[tuple[int, float]]]:
    """Per arm, per round: (tokens, wall seconds) summed over the prompts."""
    for chat in arms.values():  # warm-up: lazy imports, allocations, caches
        run(chat, prompts[0], params)
    rows: dict[str, list[tuple[int, float]]] = {a: [] for a in arms}
    for r in range(rounds):
        sums = {a: [0, 0.0] for a in arms}
        for p in prompts:
            n_tokens = None
            for name, chat in arms.items():
                _, wall = run(chat, p, params)
                n_tokens = count(p) if n_tokens is None else n_tokens
                sums[name][0] += n_tokens
                sums[name][1] += wall
        for a in arms:
            rows[a].append((int(sums[a][0]), float(sums[a][1])))
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{a} {1000 * s[1] / max(s[0], 1):.2f}" for a, s in sums.items()) + " ms/token",
            flush=True)
    return rows


def replay_us(chat: Any, model: Any, prompts: list[str], params: Any, repeats: int = 5
              ) -> float:
    """The guard's own cost, without the model: the unguarded model's recorded deltas
    pushed through a guard session (`guarded_deltas`, as the serving path runs it); median
    microseconds per delta over `repeats` passes. Text-path arms only (a hidden-state arm
    needs the model's states)."""
    from swisscheese.guard.pipeline import guarded_deltas

    recorded = [(p, list(model.stream(p, params))) for p in prompts]
    n = sum(len(d) for _, d in recorded)
    times = []
    for _ in range(repeats + 1):  # the first pass warms caches and is dropped
        t = time.perf_counter()
        for p, deltas in recorded:
            session = chat.guard.session(p)
            session.check_input()
            for _ev in guarded_deltas(session, iter(deltas)):
                pass
        times.append(time.perf_counter() - t)
    return 1e6 * statistics.median(times[1:]) / max(n, 1)


def summarise(rows: dict[str, list[tuple[int, float]]]) -> dict[str, dict[str, Any]]:
    base = rows["unguarded"]
    out: dict[str, dict[str, Any]] = {}
    for a, rs in rows.items():
        ratios = [(w / n) / (bw / bn) for (n, w), (bn, bw) in zip(rs, base, strict=True)]
        out[a] = {"ms_per_token_median": statistics.median(1000 * w / n for n, w in rs),
                  "added_time_median": statistics.median(ratios) - 1.0,
                  "added_time_rounds": [x - 1.0 for x in ratios]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/organism/aligned")
    ap.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH",
                    help="a guarded arm: its name and bundle directory (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-served"))
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=160, help="max new tokens per reply")
    ap.add_argument("--calm-below", type=float, default=0.5,
                    help="the guard's calm release (the gateway's default 0.5; 0: hold back)")
    args = ap.parse_args()
    bundles = parse_bundles(args.bundle)
    if not bundles:
        raise SystemExit("give at least one --bundle NAME=PATH")
    import torch

    from swisscheese.fileio import atomic_write_json
    from swisscheese.models.base import GenerationParams
    from swisscheese.models.hf import HFChatModel

    torch.set_num_threads(1)
    model = HFChatModel(args.model, threads=1)
    params = GenerationParams(max_new_tokens=args.tokens)
    arms, info = arms_for(model, bundles, args.calm_below or None)
    prompts = _prompts(args.prompts)
    tokens: dict[str, int] = {}

    def count(prompt: str) -> int:
        # Tokens of the unguarded reply: every arm generates the same ones.
        if prompt not in tokens:
            tokens[prompt] = len(model.tokenizer(model.generate(prompt, params).content,
                                                 add_special_tokens=False)["input_ids"])
        return tokens[prompt]

    t0 = time.perf_counter()
    rows = measure(arms, prompts, args.rounds, params, count)
    results = summarise(rows)
    for a, extra in info.items():
        if not extra["hidden_state_path"]:
            results[a]["guard_alone_us_per_delta"] = replay_us(arms[a], model, prompts, params)
    for a, row in results.items():
        extra = info.get(a, {})
        print(f"{a:<12} {row['ms_per_token_median']:8.3f} ms/token  "
              f"{100 * row['added_time_median']:+7.2f}%  {extra.get('output', '')} "
              f"{'hidden-state path' if extra.get('hidden_state_path') else ''}"
              + (f"  guard alone {row['guard_alone_us_per_delta']:.1f} us/delta"
                 if "guard_alone_us_per_delta" in row else ""))
    out = {"model": args.model, "arms": results, "bundles": info, "prompts": prompts,
           "tokens_per_prompt": tokens, "calm_below": args.calm_below,
           "rounds": args.rounds, "max_new_tokens": args.tokens, "threads": 1,
           "seconds": round(time.perf_counter() - t0, 1), "load_average": os.getloadavg(),
           "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    atomic_write_json(args.out / "served_overhead.json", out)
    print(f"wrote {args.out / 'served_overhead.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
