"""Added time to first token of the guarded gateway over the same backend unguarded, on the
demo organism, measured side by side in one run.

    python benchmarks/gateway_latency.py                      # about two minutes
    python benchmarks/gateway_latency.py --n 20 --max-tokens 32

Three gateways run in this process on loopback, sharing one loaded model:

    unguarded   no bundle: the same gateway code, no classifier layers
    guarded     the bundle with the gateway's defaults: hold-back 32 with calm release
                below half the output threshold (`--calm-below 0.5`): the window applies
                once a reply looks suspicious
    guarded-hb0 the bundle, hold-back 0: what the classifier calls alone add
    guarded-strict the bundle, the strict 32-character window (`--calm-below 0`)

For each benign prompt of the world (utility tasks and harmless look-alikes) every arm is
called once, in rotating order, with the official `openai` client streaming; time to first
token is the time from sending the request to the first chunk with content. The added TTFT
of an arm is its TTFT minus the unguarded TTFT on the same prompt (a paired difference),
summarised as p50 and p90. A prompt that any arm blocked is left out of the pairs and
counted. Target: p50 added TTFT <= 10 ms. With a hold-back window the first token can only
be released once `hold_back` characters have been generated, so that arm's figure includes
the generation of those characters: it is the price of the window, shown apart from the
price of the classifiers (guarded-hb0).

Writes runs/bench/gateway_latency.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ARMS = ("unguarded", "guarded", "guarded-hb0", "guarded-strict")
TARGET_MS = 10.0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ttft(client: Any, prompt: str, max_tokens: int) -> tuple[float, bool]:
    """(seconds to the first content chunk, blocked)."""
    t0 = time.perf_counter()
    first = None
    finish = None
    for ch in client.chat.completions.create(model="organism", stream=True,
                                             max_tokens=max_tokens,
                                             messages=[{"role": "user", "content": prompt}]):
        if not ch.choices:
            continue
        if first is None and ch.choices[0].delta.content:
            first = time.perf_counter() - t0
        finish = ch.choices[0].finish_reason or finish
    return (first if first is not None else time.perf_counter() - t0,
            finish == "content_filter")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/organism/aligned")
    ap.add_argument("--bundle", type=Path, default=Path("runs/classifier/bundle"))
    ap.add_argument("--n", type=int, default=60, help="benign prompts")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=Path("runs/bench/gateway_latency.json"))
    args = ap.parse_args()

    import openai
    import torch

    from swisscheese.bundles import load_bundle
    from swisscheese.fileio import atomic_write_json
    from swisscheese.models import load_model
    from swisscheese.serve.app import create_app
    from swisscheese.serve.config import GatewayConfig
    from swisscheese.serve.server import serve_in_background
    from swisscheese.world import World

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    bundle = load_bundle(args.bundle)
    world = World(seed=0)
    benign = [e.prompt for e in world.eval_utility(args.n // 2)]
    benign += [e.prompt for e in world.eval_lookalikes()][: args.n - len(benign)]

    tmp = Path(tempfile.mkdtemp(prefix="gw-latency-"))

    def app(arm: str) -> Any:
        policy: dict[str, Any] = ({"hold_back": 0} if arm == "guarded-hb0" else
                                  {"calm_below": None} if arm == "guarded-strict" else {})
        cfg = GatewayConfig(store=tmp / f"{arm}.sqlite", served_name="organism",
                            rate_per_s=1e6, rate_burst=10**6, challenge=False, **policy)
        return create_app(cfg, model=model, bundle=None if arm == "unguarded" else bundle)

    times: dict[str, list[float]] = {a: [] for a in ARMS}
    blocked: dict[str, int] = {a: 0 for a in ARMS}
    pairs: dict[str, list[float]] = {a: [] for a in ARMS[1:]}
    left_out = 0
    with (serve_in_background(app("unguarded")) as u0, serve_in_background(app("guarded")) as u1,
          serve_in_background(app("guarded-hb0")) as u2,
          serve_in_background(app("guarded-strict")) as u3):
        clients = {a: openai.OpenAI(base_url=u + "/v1", api_key="none", max_retries=0)
                   for a, u in zip(ARMS, (u0, u1, u2, u3), strict=True)}
        for c in clients.values():  # warm up the model and the connections
            ttft(c, "What is 1 plus 1?", 4)
        for i, prompt in enumerate(benign):
            got: dict[str, tuple[float, bool]] = {}
            for k in range(len(ARMS)):
                arm = ARMS[(i + k) % len(ARMS)]
                got[arm] = ttft(clients[arm], prompt, args.max_tokens)
            for arm, (t, b) in got.items():
                times[arm].append(t * 1000)
                blocked[arm] += b
            if any(b for _, b in got.values()):
                left_out += 1
                continue
            for arm in ARMS[1:]:
                pairs[arm].append((got[arm][0] - got["unguarded"][0]) * 1000)
            if (i + 1) % 10 == 0:
                print(f"{i + 1}/{len(benign)} prompts", flush=True)

    result: dict[str, Any] = {
        "model": args.model, "bundle": str(args.bundle), "bundle_version": bundle.version,
        "prompts": len(benign), "pairs": len(pairs["guarded"]), "left_out_blocked": left_out,
        "max_tokens": args.max_tokens, "torch_threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "ttft_ms": {a: {"p50": pct(times[a], 0.5), "p90": pct(times[a], 0.9)} for a in ARMS},
        "blocked": blocked,
        "added_ttft_ms": {a: {"p50": pct(pairs[a], 0.5), "p90": pct(pairs[a], 0.9),
                              "mean": statistics.fmean(pairs[a]) if pairs[a] else None}
                          for a in ARMS[1:]},
        "target_p50_ms": TARGET_MS,
    }
    result["target_met"] = {a: result["added_ttft_ms"][a]["p50"] <= TARGET_MS for a in ARMS[1:]}
    print(f"\nTTFT on {args.model}, {len(benign)} benign prompts, "
          f"{result['pairs']} pairs ({left_out} left out: blocked)")
    print(f"{'arm':<14}{'TTFT p50':>10}{'TTFT p90':>10}{'added p50':>11}{'added p90':>11}")
    for a in ARMS:
        add = result["added_ttft_ms"].get(a)
        print(f"{a:<14}{result['ttft_ms'][a]['p50']:>10.2f}{result['ttft_ms'][a]['p90']:>10.2f}"
              + (f"{add['p50']:>11.2f}{add['p90']:>11.2f}" if add else f"{'-':>11}{'-':>11}"))
    for a in ARMS[1:]:
        print(f"target p50 added TTFT <= {TARGET_MS:g} ms, {a}: "
              f"{'met' if result['target_met'][a] else 'missed'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
