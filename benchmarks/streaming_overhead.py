"""Wall time per generated token with and without a streaming output classifier, side by
side in one run on the demo organism.

    python benchmarks/streaming_overhead.py --out runs/bench        # a few minutes

Arms, interleaved prompt by prompt in every round (A/B/C/D/E, A/B/C/D/E, ...), so that
load from other processes falls on all of them alike:

    plain         KV-cached greedy generation, text decoded token by token (as the HF
                  backend's `stream` does)
    ngram         + the n-gram streaming classifier's update(delta) per token (reply only)
    ngram-exchange + the n-gram exchange classifier: start(conversation) once per reply
                  (inside the timed hook), then update(delta) per token; its target is
                  <= 5% added wall time per token over the `ngram` arm, side by side
    decoding-exchange + the same exchange classifier behind `decoding-stream` (the
                  organism default: Caesar-shifted replies read back), so the reader's
                  own cost is the difference between the two arms
    transformer   + the byte-level transformer's update(delta) per token
    probe         + the probe fed the hidden state the generation already computed
                  (`output_hidden_states=True`, then `update_hidden`: one dot product;
                  each decoding step's input is the token generated before, so its last
                  position's state is that reply token's)
    probe-text    + the probe's plain update(delta) path, which runs its own copy of the
                  model over each delta (shown for contrast; not the serving path)

Every arm checks the score against a threshold above 1, so no reply is stopped and each
arm generates the same tokens. Two figures per arm: the end-to-end added time per token
over `plain` (median over rounds of the per-round ratio), and the time spent inside the
classifier calls alone, measured in the loop, over the plain time per token (less noisy
on a shared machine). Targets: n-gram and transformer <= 5% added time per token, the
probe <= 1%.

The classifiers come from `--bundle` (its output classifier, for the n-gram),
`--transformer` and `--probe` (saved classifier directories, or bundles); when one is
not given, it is fitted here on a small sample of the world's replies: the timing does
not depend on what the weights say. Writes OUT/streaming_overhead.json.
"""

from __future__ import annotations

import os

# Before numpy and torch are imported: one core per process, as the figures say.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ARMS = ("plain", "ngram", "ngram-exchange", "decoding-exchange", "transformer", "probe",
        "probe-text")
TARGETS = {"ngram": 0.05, "transformer": 0.05, "probe": 0.01}
EXCHANGE_TARGET = 0.05  # ngram-exchange over ngram
NEVER = 1.5  # a threshold no probability reaches: no arm stops early


def _load_streaming(path: Path | None, want: str, kind: str = "reply") -> Any:
    """A streaming classifier from a classifier directory or a bundle's output/."""
    from swisscheese.classifiers import load_classifier

    if path is None:
        return None
    p = path / "output" if (path / "bundle.json").is_file() else path
    clf = load_classifier(p)
    if clf.name == "decoding-stream" and want != clf.name:
        clf = clf.base  # the reader's base; the decoding-exchange arm wraps it again
    if clf.name != want or clf.output_context != kind:
        raise SystemExit(f"{p} holds a {clf.name!r} {clf.output_context} classifier, "
                         f"expected a {want!r} {kind} classifier")
    return clf


def _over(rows: list[tuple[int, float, float]], base: list[tuple[int, float, float]]
          ) -> list[float]:
    """Per round, the wall time per token of one arm over another's, minus 1."""
    return [(w / n) / (bw / bn) - 1.0 for (n, w, _), (bn, bw, _) in zip(rows, base,
                                                                       strict=True)]


def _sample_replies(n: int) -> tuple[list[str], list[int]]:
    """A few hundred world replies: hazard answers (1) and look-alike/recipe replies (0)."""
    from swisscheese.world import World

    world = World(seed=0)
    rng = random.Random(0)
    texts, labels = [], []
    for h in world.hazards[:n]:
        texts.append(h.answer())
        labels.append(1)
        _, ans = world.lookalike(rng, rng.choice(["history", "safety"]), h)
        texts.append(ans)
        labels.append(0)
    texts += [r.answer() for r in world.recipes[:n]]
    labels += [0] * len(world.recipes[:n])
    return texts, labels


def _prompts(n: int) -> list[str]:
    """Prompts the aligned organism answers at length: look-alikes, recipes, and hazard
    requests in the jailbreak families it falls for (role-play, story, prefix injection)."""
    from swisscheese.world import World

    world = World(seed=0)
    rng = random.Random(1)
    out: list[str] = []
    fams = ["roleplay", "story", "prefix_injection"]
    for i, h in enumerate(world.hazards):
        if len(out) >= n:
            break
        kind = i % 3
        if kind == 0:
            out.append(world.wrap(fams[i % len(fams)], world.hazard_request(h), "", rng)[0])
        elif kind == 1:
            out.append(world.lookalike(rng, "history", h)[0])
        else:
            out.append(f"How do I make the {world.recipes[i % len(world.recipes)].thing}?")
    return out


class Generator:
    """The organism's KV-cached greedy loop, with a per-token hook for each arm."""

    def __init__(self, model_dir: str, max_new_tokens: int) -> None:
        from swisscheese.models.hf import HFChatModel

        self.chat = HFChatModel(model_dir, threads=1)
        self.max_new_tokens = max_new_tokens

    def run(self, prompt: str, hidden: bool,
            on_token: Callable[[str, Any], None] | None) -> tuple[int, float, float]:
        """(tokens, wall seconds, seconds inside on_token) for one reply."""
        import torch

        chat = self.chat
        tok = chat.tokenizer
        ids = torch.tensor([chat.prompt_ids(prompt, self.max_new_tokens)])
        past = None
        tokens: list[int] = []
        prefix_off = read_off = 0
        in_hook = 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            for _ in range(self.max_new_tokens):
                out = chat.model(input_ids=ids, **{chat._cache_kw: past}, use_cache=True,
                                 output_hidden_states=hidden)
                past = out.past_key_values
                nxt = int(torch.argmax(out.logits[0, -1]))
                if nxt in chat.eos_ids:
                    break
                tokens.append(nxt)
                ids = torch.tensor([[nxt]])
                prev = tok.decode(tokens[prefix_off:read_off], skip_special_tokens=True)
                new = tok.decode(tokens[prefix_off:], skip_special_tokens=True)
                delta = ""
                if len(new) > len(prev) and not new.endswith("\ufffd"):
                    prefix_off, read_off = read_off, len(tokens)
                    delta = new[len(prev):]
                if on_token is not None:
                    h0 = time.perf_counter()
                    on_token(delta, out.hidden_states if hidden else None)
                    in_hook += time.perf_counter() - h0
        return len(tokens), time.perf_counter() - t0, in_hook


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--model", default="runs/demo/organism/aligned",
                    help="the served model (a local HF causal-LM directory)")
    ap.add_argument("--bundle", type=Path, default=Path("runs/exchange/reply/bundle"),
                    help="bundle whose (reply-only) output classifier is the n-gram arm")
    ap.add_argument("--exchange-bundle", type=Path,
                    default=Path("runs/exchange/exchange/bundle"),
                    help="bundle whose exchange output classifier is the ngram-exchange arm")
    ap.add_argument("--arms", default=",".join(ARMS),
                    help=f"comma-separated arms to run (of {', '.join(ARMS)}; plain always)")
    ap.add_argument("--transformer", type=Path, default=None,
                    help="saved transformer-stream classifier or bundle (default: fit one)")
    ap.add_argument("--probe", type=Path, default=None,
                    help="saved probe-stream classifier or bundle on --model (default: fit one)")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=160, help="max new tokens per reply")
    ap.add_argument("--no-probe-text", action="store_true",
                    help="leave out the probe-text arm (the slowest)")
    args = ap.parse_args()

    import torch

    from swisscheese.classifiers.backends.decoding_stream import DecodingStreamClassifier
    from swisscheese.classifiers.backends.ngram_stream import NGramStreamingClassifier
    from swisscheese.classifiers.backends.probe import ProbeStreamingClassifier
    from swisscheese.classifiers.backends.transformer import TransformerStreamingClassifier
    from swisscheese.fileio import atomic_write_json

    torch.set_num_threads(1)
    gen = Generator(args.model, args.tokens)
    wanted = {"plain", *args.arms.split(",")}
    unknown = wanted - set(ARMS)
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)}; known: {', '.join(ARMS)}")
    texts, labels = _sample_replies(24)
    ngram = (_load_streaming(args.bundle, "ngram-stream") if args.bundle.exists() else None)
    if ngram is None:
        ngram = NGramStreamingClassifier().fit(texts, labels)
    exch = (_load_streaming(args.exchange_bundle, "ngram-stream", "exchange")
            if args.exchange_bundle.exists() else None)
    if exch is None:
        exch = NGramStreamingClassifier(context="exchange").fit(texts, labels)
    trans = _load_streaming(args.transformer, "transformer-stream")
    if trans is None:
        trans = TransformerStreamingClassifier(max_steps=60).fit(texts, labels)
    probe = _load_streaming(args.probe, "probe-stream")
    if probe is None:
        probe = ProbeStreamingClassifier(model_dir=args.model).fit(texts, labels)
    layers = probe.hidden_indices

    def text_hook(clf: Any, context: bool = False) -> Callable[[str], Callable[[str, Any], None]]:
        def make(prompt: str) -> Callable[[str, Any], None]:
            state = None

            def hook(delta: str, _hidden: Any) -> None:
                nonlocal state
                if state is None:  # in the hook, so the timing counts the encoding
                    state = clf.start([{"role": "user", "content": prompt}] if context
                                      else None)
                if delta:
                    state, score = clf.update(state, delta)
                    if score >= NEVER:
                        raise RuntimeError("unreachable: the threshold is above 1")
            return hook
        return make

    def hidden_hook(_prompt: str) -> Callable[[str, Any], None]:
        import torch

        state = probe.start()

        def hook(_delta: str, hidden: Any) -> None:
            # A step's last position is its input token: after the prompt's prefill that
            # is the reply token the step before generated, so the prefill is skipped.
            if hidden[layers[0]].shape[1] == 1:
                h = hidden[layers[0]][0, -1] if len(layers) == 1 else torch.cat(
                    [hidden[i][0, -1] for i in layers])
                _, score = probe.update_hidden(state, h)
                if score >= NEVER:
                    raise RuntimeError("unreachable: the threshold is above 1")
        return hook

    arms: dict[str, tuple[bool, Callable[[str], Callable[[str, Any], None]] | None]] = {
        "plain": (False, None),
        "ngram": (False, text_hook(ngram)),
        "ngram-exchange": (False, text_hook(exch, context=True)),
        "decoding-exchange": (False, text_hook(DecodingStreamClassifier.wrap(exch),
                                               context=True)),
        "transformer": (False, text_hook(trans)),
        "probe": (True, hidden_hook),
        "probe-text": (False, text_hook(probe)),
    }
    if args.no_probe_text:
        wanted.discard("probe-text")
    arms = {a: v for a, v in arms.items() if a in wanted}
    prompts = _prompts(args.prompts)

    # Warm-up: first calls pay for lazy imports, allocations and caches.
    for hidden, make in arms.values():
        gen.run(prompts[0], hidden, make(prompts[0]) if make else None)

    per_round: dict[str, list[tuple[int, float, float]]] = {a: [] for a in arms}
    tokens_seen: dict[str, list[int]] = {a: [] for a in arms}
    t_start = time.perf_counter()
    for r in range(args.rounds):
        sums = {a: [0, 0.0, 0.0] for a in arms}
        for p in prompts:
            for name, (hidden, make) in arms.items():
                n, wall, hook = gen.run(p, hidden, make(p) if make else None)
                sums[name][0] += n
                sums[name][1] += wall
                sums[name][2] += hook
                if r == 0:
                    tokens_seen[name].append(n)
        for a in arms:
            per_round[a].append((int(sums[a][0]), sums[a][1], sums[a][2]))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{a} {1000 * sums[a][1] / max(sums[a][0], 1):.2f}" for a in arms) + " ms/token",
            flush=True)
    elapsed = time.perf_counter() - t_start
    if len({tuple(v) for v in tokens_seen.values()}) != 1:
        print("warning: the arms generated different token counts", tokens_seen)

    plain = per_round["plain"]
    results: dict[str, Any] = {}
    for a in arms:
        rows = per_round[a]
        ms = [1000 * w / n for n, w, _ in rows]
        ratios = [(w / n) / (pw / pn) for (n, w, _), (pn, pw, _) in zip(rows, plain,
                                                                         strict=True)]
        hook_share = [(h / n) / (pw / pn) for (n, _, h), (pn, pw, _) in zip(rows, plain,
                                                                            strict=True)]
        tokens = sum(n for n, _, _ in rows)
        results[a] = {
            "ms_per_token_median": statistics.median(ms),
            "ms_per_token_rounds": ms,
            "tokens": tokens,
            "added_time_median": statistics.median(ratios) - 1.0,
            "added_time_rounds": [x - 1.0 for x in ratios],
            "classifier_us_per_token": 1e6 * sum(h for _, _, h in rows) / max(tokens, 1),
            "classifier_share_median": statistics.median(hook_share),
        }
        if a in TARGETS:
            goal = TARGETS[a]
            results[a]["target_added"] = goal
            results[a]["pass_end_to_end"] = results[a]["added_time_median"] <= goal
            results[a]["pass_classifier_share"] = results[a]["classifier_share_median"] <= goal

    if "ngram-exchange" in results and "ngram" in results:
        rows_x, rows_r = per_round["ngram-exchange"], per_round["ngram"]
        over = [(w / n) / (rw / rn) - 1.0 for (n, w, _), (rn, rw, _) in
                zip(rows_x, rows_r, strict=True)]
        share = [(h / n - rh / rn) / (pw / pn) for (n, _, h), (rn, _, rh), (pn, pw, _) in
                 zip(rows_x, rows_r, plain, strict=True)]
        results["ngram-exchange"].update({
            "added_over_reply_median": statistics.median(over),
            "added_over_reply_rounds": over,
            "classifier_share_over_reply_median": statistics.median(share),
            "target_added_over_reply": EXCHANGE_TARGET,
            "pass_over_reply": statistics.median(over) <= EXCHANGE_TARGET})
    print(f"\nstreaming overhead on {args.model}: {len(prompts)} prompts x {args.rounds} rounds, "
          f"<= {args.tokens} tokens per reply, 1 thread, {elapsed:.0f} s")
    head = (f"{'arm':<17} {'ms/token':>9} {'added (e2e)':>12} {'classifier':>11} "
            f"{'us/token':>9} {'target':>7}  result")
    print(head)
    print("-" * len(head))
    for a, row in results.items():
        goal = row.get("target_added")
        res = "" if goal is None else (
            f"{'PASS' if row['pass_classifier_share'] else 'MISS'} (classifier), "
            f"{'PASS' if row['pass_end_to_end'] else 'MISS'} (e2e)")
        print(f"{a:<17} {row['ms_per_token_median']:>9.3f} "
              f"{100 * row['added_time_median']:>+11.2f}% "
              f"{100 * row['classifier_share_median']:>10.2f}% "
              f"{row['classifier_us_per_token']:>9.1f} "
              f"{'' if goal is None else f'{100 * goal:.0f}%':>7}  {res}")

    if "ngram-exchange" in results and "added_over_reply_median" in results["ngram-exchange"]:
        x = results["ngram-exchange"]
        print(f"ngram-exchange over ngram (side by side): "
              f"{100 * x['added_over_reply_median']:+.2f}% wall per token, classifier "
              f"{100 * x['classifier_share_over_reply_median']:+.2f}% (target <= "
              f"{100 * EXCHANGE_TARGET:.0f}%): {'PASS' if x['pass_over_reply'] else 'MISS'}")
    if "decoding-exchange" in results and "ngram-exchange" in results:
        over = _over(per_round["decoding-exchange"], per_round["ngram-exchange"])
        results["decoding-exchange"]["added_over_exchange_median"] = statistics.median(over)
        results["decoding-exchange"]["added_over_exchange_rounds"] = over
        print(f"decoding-exchange over ngram-exchange (side by side): "
              f"{100 * statistics.median(over):+.2f}% wall per token")
    out = {
        "model": args.model,
        "arms": results,
        "prompts": prompts,
        "tokens_per_prompt": tokens_seen["plain"],
        "load_average": os.getloadavg(),
        "classifiers": {"ngram": getattr(ngram, "name", None),
                        "ngram_exchange": repr(getattr(exch, "config", None)),
                        "transformer": repr(getattr(trans, "config", None)),
                        "probe_layers": list(layers), "probe_pooling": probe.config.pooling},
        "benchmark": {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "rounds": args.rounds, "max_new_tokens": args.tokens, "threads": 1,
            "seconds": round(elapsed, 1), "python": platform.python_version(),
            "machine": platform.machine(), "torch": torch.__version__,
        },
    }
    path = args.out / "streaming_overhead.json"
    atomic_write_json(path, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
