"""32 concurrent streaming clients against the guarded gateway on loopback, with a hot swap
of the guard bundle midway.

    python benchmarks/gateway_load.py                        # 60 s of load, ~1.5 min
    python benchmarks/gateway_load.py --duration 20 --clients 8

The gateway runs as its own process (`swisscheese serve`, the demo organism and the
classifier bundle); the clients are asyncio tasks with httpx in this process, each
sending one streaming request after another, a mix of benign prompts (utility tasks,
harmless look-alikes) and hazard prompts (plain requests and jailbreak families) of
`World(seed=0)`. Halfway through, the admin endpoint under `swisscheese bundle deploy`
swaps the bundle (`--swap-bundle`, default runs/patch/v2 when it exists, else the same
bundle again).

Counted, from the clients: requests, errors (non-200 status, transport failures, error
events), streams without a final chunk (no finish_reason or no [DONE]), blocks by layer.
Counted, from the gateway's store joined by completion id: blocked replies whose released
text went beyond the hold-back window, i.e. released > produced - hold_back characters at
the moment of the block, and blocked streams where the client received more text before
the refusal than the gateway says it released. Targets: zero errors, zero streams without
a final chunk, zero releases beyond the window, zero failed requests around the swap.

The world's jailbreak prompts all trip the input layer of the organism bundle, so in the
default run the output layer has little to stop; the hold-back check is exercised by

    python benchmarks/gateway_load.py --model runs/demo/organism/helpful-only \
        --no-input-layer --json runs/bench/gateway_load_output_layer.json

where the helpful-only organism answers hazard requests and the streaming classifier
alone must cut them off.

Writes runs/bench/gateway_load.json. The multi-worker run (`serve --workers 2` on
PostgreSQL, with a SIGKILL of one worker) is benchmarks/gateway_fleet.py, which uses these
clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ADMIN = "bench-admin-key-0123456789"


def pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def prompts(seed: int) -> list[tuple[str, str]]:
    from swisscheese.world import World
    from swisscheese.world.families import FAMILIES

    w = World(seed=0)
    out = [("benign", e.prompt) for e in w.eval_utility(80)]
    out += [("benign", e.prompt) for e in w.eval_lookalikes()[:80]]
    out += [("hazard", e.prompt) for e in w.eval_refusal()[:40]]
    for fam in list(FAMILIES)[:6]:
        out += [("hazard", e.prompt) for e in w.eval_attacks(fam)[:10]]
    random.Random(seed).shuffle(out)
    return out


async def one_stream(client: Any, url: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    r: dict[str, Any] = {"status": None, "finish": None, "done": False, "error": None,
                         "text": "", "id": None, "layer": None, "ttft": None}
    t0 = time.perf_counter()
    body = {"model": "organism", "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as resp:
            r["status"] = resp.status_code
            r["worker"] = resp.headers.get("x-swisscheese-worker")
            if resp.status_code != 200:
                r["error"] = (await resp.aread()).decode()[:200]
                return r
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    r["done"] = True
                    continue
                ev = json.loads(data)
                if "error" in ev:
                    r["error"] = ev["error"].get("message")
                    continue
                r["id"] = ev["id"]
                ch = ev["choices"][0]
                piece = ch["delta"].get("content") or ""
                if piece and r["ttft"] is None:
                    r["ttft"] = time.perf_counter() - t0
                r["text"] += piece
                if ch.get("finish_reason"):
                    r["finish"] = ch["finish_reason"]
                    r["layer"] = (ev.get("swisscheese") or {}).get("layer")
    except Exception as e:  # noqa: BLE001 - every failure is counted
        r["error"] = f"{type(e).__name__}: {e}"
    r["seconds"] = time.perf_counter() - t0
    return r


async def run_load(url: str, n_clients: int, duration: float, max_tokens: int,
                   swap_path: str, seed: int) -> dict[str, Any]:
    import httpx

    pool = prompts(seed)
    results: list[dict[str, Any]] = []
    swap: dict[str, Any] = {}
    t_end = time.monotonic() + duration
    limits = httpx.Limits(max_connections=n_clients + 4)

    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        async def worker(k: int) -> None:
            i = k
            while time.monotonic() < t_end:
                kind, prompt = pool[i % len(pool)]
                i += n_clients
                t = time.monotonic()
                r = await one_stream(client, url, prompt, max_tokens)
                r.update(kind=kind, start=t, end=time.monotonic())
                results.append(r)

        async def swapper() -> None:
            await asyncio.sleep(duration / 2)
            swap["at"] = time.monotonic()
            # What `swisscheese bundle deploy` sends (the CLI itself is tested in
            # tests/integration; its start-up under this load would take longer than the swap).
            r = await client.post(url + "/admin/bundle", json={"path": swap_path},
                                  headers={"Authorization": f"Bearer {ADMIN}"})
            swap.update(status=r.status_code, body=r.json(), done=time.monotonic())

        await asyncio.gather(swapper(), *(worker(k) for k in range(n_clients)))
    return {"results": results, "swap": swap}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/organism/aligned")
    ap.add_argument("--bundle", default="runs/classifier/bundle")
    ap.add_argument("--swap-bundle", default=None)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8, help="gateway model streams at once")
    ap.add_argument("--hold-back", type=int, default=32)
    ap.add_argument("--no-input-layer", action="store_true",
                    help="only the output layer: with --model .../helpful-only, every hazard "
                         "answer must be stopped by the streaming classifier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("runs/bench/gateway_load.json"))
    args = ap.parse_args()

    from swisscheese.fileio import atomic_write_json
    from swisscheese.serve.server import free_port
    from swisscheese.store.decisions import open_gateway_store, query_decisions

    swap_path = args.swap_bundle or ("runs/patch/v2" if Path("runs/patch/v2/bundle.json")
                                     .is_file() else args.bundle)
    tmp = Path(tempfile.mkdtemp(prefix="gw-load-"))
    store = tmp / "gateway.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(tmp / "gateway.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "swisscheese.cli", "serve", "--model", args.model, "--bundle",
         args.bundle, "--port", str(port), "--store", str(store), "--admin-key", ADMIN,
         "--served-name", "organism", "--rate", "100000", "--burst", "100000",
         "--concurrency", str(args.concurrency), "--hold-back", str(args.hold_back),
         "--max-tokens-limit", str(max(args.max_tokens, 16)), "--no-challenge",
         *(["--no-input-layer"] if args.no_input_layer else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print((tmp / "gateway.log").read_text()[-2000:])
                raise SystemExit("the gateway did not start")
            time.sleep(0.2)
        print(f"gateway up at {url}; {args.clients} clients for {args.duration:g} s, "
              f"swap to {swap_path} at {args.duration / 2:g} s", flush=True)
        t0 = time.monotonic()
        out = asyncio.run(run_load(url, args.clients, args.duration, args.max_tokens, swap_path,
                                   args.seed))
        wall = time.monotonic() - t0
        metrics = httpx.get(url + "/metrics").text
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    results, swap = out["results"], out["swap"]
    rows = {r["id"]: r for r in query_decisions(open_gateway_store(store))}
    errors = [r for r in results if r["status"] != 200 or r["error"]]
    no_final = [r for r in results if r["status"] == 200 and not r["error"]
                and (r["finish"] is None or not r["done"])]
    blocked = [r for r in results if r["finish"] == "content_filter"]
    beyond_window: list[str] = []
    client_mismatch: list[str] = []
    output_blocked = 0
    for r in blocked:
        row = rows.get(r["id"])
        if row is None:
            client_mismatch.append(r["id"])
            continue
        if row["layer"] in ("output", "error") and row["produced_chars"] > 0:
            output_blocked += 1
            if row["released_chars"] > max(0, row["produced_chars"] - row["hold_back"]):
                beyond_window.append(r["id"])
        refusal_at = r["text"].rfind("I can't help with that request.")
        got = len(r["text"][:refusal_at]) if refusal_at >= 0 else len(r["text"])
        if got != row["released_chars"]:
            client_mismatch.append(r["id"])
    in_swap = [r for r in results if swap and r["start"] <= swap.get("done", 0)
               and r["end"] >= swap["at"]]
    layers: dict[str, int] = {}
    for r in blocked:
        layers[r["layer"] or "?"] = layers.get(r["layer"] or "?", 0) + 1
    versions: dict[str, int] = {}
    for row in rows.values():
        versions[str(row["bundle_version"])] = versions.get(str(row["bundle_version"]), 0) + 1
    ttfts = [r["ttft"] * 1000 for r in results if r["ttft"] is not None]
    result = {
        "clients": args.clients, "duration_s": args.duration, "wall_s": round(wall, 1),
        "max_tokens": args.max_tokens, "gateway_concurrency": args.concurrency,
        "hold_back": args.hold_back, "model": args.model,
        "input_layer": not args.no_input_layer, "requests": len(results),
        "requests_per_s": round(len(results) / wall, 2),
        "benign": sum(r["kind"] == "benign" for r in results),
        "hazard": sum(r["kind"] == "hazard" for r in results),
        "errors": len(errors), "error_examples": [r["error"] for r in errors[:5]],
        "streams_without_final_chunk": len(no_final),
        "blocked": len(blocked), "blocked_by_layer": layers,
        "output_blocked_with_text_produced": output_blocked,
        "released_beyond_hold_back": len(beyond_window),
        "client_text_not_matching_store": len(client_mismatch),
        "decisions_logged": len(rows), "decisions_by_bundle_version": versions,
        "swap": {"bundle": swap_path, "status": swap.get("status"),
                 "version": (swap.get("body") or {}).get("version"),
                 "previous_version": (swap.get("body") or {}).get("previous_version"),
                 "took_s": round(swap["done"] - swap["at"], 2) if swap else None,
                 "requests_overlapping": len(in_swap),
                 "failed_overlapping": sum(r in errors or r in no_final for r in in_swap)},
        "ttft_ms_under_load": {"p50": pct(ttfts, 0.5), "p90": pct(ttfts, 0.9)},
        "metrics_blocks": [ln for ln in metrics.splitlines()
                           if ln.startswith("swisscheese_blocks_total")],
    }
    result["targets_met"] = (result["errors"] == 0 and result["streams_without_final_chunk"] == 0
                             and result["released_beyond_hold_back"] == 0
                             and result["swap"]["status"] == 200
                             and result["swap"]["failed_overlapping"] == 0)
    for k in ("requests", "requests_per_s", "errors", "streams_without_final_chunk", "blocked",
              "blocked_by_layer", "output_blocked_with_text_produced",
              "released_beyond_hold_back", "client_text_not_matching_store",
              "decisions_by_bundle_version", "swap", "ttft_ms_under_load", "targets_met"):
        print(f"{k:<36} {result[k]}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0 if result["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
