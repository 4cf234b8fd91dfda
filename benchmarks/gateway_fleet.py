"""The multi-worker gateway under load: `swisscheese serve --workers 2` on PostgreSQL,
32 streaming clients for 60 s, a hot swap of the guard bundle at one third and a SIGKILL
of one worker at two thirds.

    python benchmarks/gateway_fleet.py                       # ~2.5 min with set-up
    python benchmarks/gateway_fleet.py --duration 20 --clients 8 --no-kill

Uses `benchmarks/gateway_load.py`'s clients and prompts. The model and bundle default to
the demo's (runs/demo/organism/aligned, runs/classifier/bundle); where those are missing
the `test` organism preset and a small bundle are trained once into runs/bench/fleet/.
PostgreSQL is a throwaway server from Debian's binaries (`swisscheese.store.pgtemp`,
fsync on, loopback only).

Targets, from the clients and the store:
- errors and streams without a final chunk: 0, apart from the streams in flight on the
  killed worker at the kill (those must all be on that worker and span the kill);
- decision rows: one per request served whole (its completion id, with the text the
  client received), none missing, none duplicated, none half-written;
- the hot swap: 0 failed requests overlapping it, every worker on the new version
  within 2 s of the deploy call;
- the restarted worker serves the current (swapped) bundle version.

Writes runs/bench/gateway_fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from gateway_load import ADMIN, one_stream, pct, prompts  # noqa: E402

PREP = Path("runs/bench/fleet")


def model_and_bundle(model: str | None, bundle: str | None) -> tuple[str, str]:
    """The demo's model and bundle, or a quick test-preset pair trained once."""
    m = model or "runs/demo/organism/aligned"
    b = bundle or "runs/classifier/bundle"
    if Path(m).is_dir() and Path(b, "bundle.json").is_file():
        return m, b
    if model or bundle:
        raise SystemExit(f"--model {m} or --bundle {b} does not exist")
    org = PREP / "organism"
    if not (org / "aligned").is_dir():
        from swisscheese.organism.train import train_organism

        print("training the test organism into", org, flush=True)
        train_organism(org, "test", seed=0)
    small = PREP / "bundle"
    if not (small / "bundle.json").is_file():
        from swisscheese.recipes.organism.train import TrainConfig, train_bundle

        print("training a small guard bundle into", small, flush=True)
        run = train_bundle(PREP / "bundle-run", heldout=("morse",),
                           config=TrainConfig(n_per_category=40, augment=1), overwrite=True)
        if Path(run) != small:
            Path(run).rename(small)
    return str(org / "aligned"), str(small)


def workers_of(url: str) -> list[dict[str, Any]]:
    import httpx

    return httpx.get(url + "/healthz", timeout=5).json()["workers"]


async def load(url: str, args: argparse.Namespace, swap_path: str) -> dict[str, Any]:
    import httpx

    pool = prompts(args.seed)
    results: list[dict[str, Any]] = []
    events: dict[str, Any] = {}
    t_end = time.monotonic() + args.duration
    limits = httpx.Limits(max_connections=args.clients + 4)

    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        async def worker(k: int) -> None:
            i = k
            while time.monotonic() < t_end:
                kind, prompt = pool[i % len(pool)]
                i += args.clients
                t = time.monotonic()
                r = await one_stream(client, url, prompt, args.max_tokens)
                r.update(kind=kind, start=t, end=time.monotonic())
                results.append(r)

        async def swapper() -> None:
            await asyncio.sleep(args.duration / 3)
            events["swap_at"] = time.monotonic()
            r = await client.post(url + "/admin/bundle", json={"path": swap_path},
                                  headers={"Authorization": f"Bearer {ADMIN}"})
            events["swap_done"] = time.monotonic()
            events["swap_status"] = r.status_code
            version = r.json().get("version")
            events["swap_version"] = version
            while time.monotonic() - events["swap_at"] < 30:
                ws = (await client.get(url + "/healthz")).json()["workers"]
                if ws and all(w["bundle_version"] == version for w in ws):
                    events["all_workers_at"] = time.monotonic()
                    events["workers_at_swap"] = len(ws)
                    break
                await asyncio.sleep(0.02)

        async def killer() -> None:
            await asyncio.sleep(2 * args.duration / 3)
            ws = (await client.get(url + "/healthz")).json()["workers"]
            victim = ws[0]
            events["killed"] = victim
            events["kill_at"] = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)

        tasks = [swapper(), *(worker(k) for k in range(args.clients))]
        if not args.no_kill:
            tasks.append(killer())
        await asyncio.gather(*tasks)
    return {"results": results, "events": events}


def start_fleet(args: argparse.Namespace, model: str, bundle: str, store: str,
                port: int, log: Any) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "swisscheese.cli", "serve", "--workers", str(args.workers),
         "--model", model, "--bundle", bundle, "--port", str(port), "--store", store,
         "--admin-key", ADMIN, "--served-name", "organism", "--rate", "100000", "--burst",
         "100000", "--concurrency", str(args.concurrency), "--max-tokens-limit",
         str(max(args.max_tokens, 16)), "--no-challenge"],
        stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_until(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    return False


def analyse(out: dict[str, Any], rows: dict[str, dict[str, Any]], args: argparse.Namespace,
            after: list[dict[str, Any]]) -> dict[str, Any]:
    results, ev = out["results"], out["events"]
    ok = [r for r in results if r["status"] == 200 and not r["error"] and r["finish"]
          and r["done"]]
    failed = [r for r in results if r not in ok]
    kill_at = ev.get("kill_at")
    killed = (ev.get("killed") or {}).get("id")
    # In flight at the kill: started before it and ended after it (the reset reaches the
    # client a moment later).
    in_flight = [r for r in failed if kill_at and r["start"] <= kill_at <= r["end"]]
    other_failures = [r for r in failed if r not in in_flight]
    on_other_worker = [r for r in in_flight if r.get("worker") not in (None, killed)]
    missing = [r["id"] for r in ok if r["id"] not in rows]
    mismatched = [r["id"] for r in ok if r["id"] in rows and rows[r["id"]]["finish_reason"]
                  is None or (r["id"] in rows and r["finish"] == "stop"
                              and rows[r["id"]]["sent"] != r["text"])]
    extra = [i for i in rows if i not in {r["id"] for r in ok}]
    swap_s = ev["all_workers_at"] - ev["swap_at"] if "all_workers_at" in ev else None
    in_swap = [r for r in results if "swap_at" in ev and r["start"] <= ev.get(
        "all_workers_at", ev["swap_done"]) and r["end"] >= ev["swap_at"]]
    ttfts = [r["ttft"] * 1000 for r in ok if r["ttft"] is not None]
    res = {
        "workers": args.workers, "clients": args.clients, "duration_s": args.duration,
        "store": "postgresql", "max_tokens": args.max_tokens, "requests": len(results),
        "served_whole": len(ok), "requests_per_s": round(len(results) / args.duration, 2),
        # Clients keep their connections alive, so each stays on the worker that accepted
        # it: the split shows how evenly the kernel handed them out.
        "served_by_worker": {w: sum(r.get("worker") == w for r in ok)
                             for w in sorted({str(r.get("worker")) for r in ok})},
        "failed": len(failed), "failed_in_flight_on_killed_worker": len(in_flight),
        "failed_otherwise": len(other_failures),
        "failed_in_flight_on_another_worker": len(on_other_worker),
        "failure_examples": [r["error"] for r in failed[:3]],
        # When each failure outside the kill started, relative to the kill (s), and where.
        "failed_otherwise_detail": [
            {"start_minus_kill_s": round(r["start"] - kill_at, 3) if kill_at else None,
             "worker": r.get("worker"), "status": r["status"], "error": (r["error"] or "")[:120]}
            for r in other_failures[:10]],
        "decision_rows": len(rows), "rows_missing_for_served": len(missing),
        "rows_half_written_or_mismatched": len(mismatched),
        "rows_without_a_served_request": len(extra),
        "swap": {"status": ev.get("swap_status"), "version": ev.get("swap_version"),
                 "deploy_call_s": round(ev["swap_done"] - ev["swap_at"], 3)
                 if "swap_done" in ev else None,
                 "all_workers_on_new_version_s": round(swap_s, 3) if swap_s else None,
                 "workers": ev.get("workers_at_swap"), "requests_overlapping": len(in_swap),
                 "failed_overlapping": sum(r in failed for r in in_swap)},
        "kill": {"worker": killed, "restarted_workers": after,
                 "restarted_on_current_version": bool(after) and all(
                     w["bundle_version"] == ev.get("swap_version") for w in after)}
        if not args.no_kill else None,
        "ttft_ms": {"p50": pct(ttfts, 0.5), "p90": pct(ttfts, 0.9)},
    }
    res["targets_met"] = (
        res["failed_otherwise"] == 0 and res["failed_in_flight_on_another_worker"] == 0
        and res["rows_missing_for_served"] == 0 and res["rows_half_written_or_mismatched"] == 0
        and res["rows_without_a_served_request"] <= res["failed_in_flight_on_killed_worker"]
        and res["swap"]["status"] == 200 and res["swap"]["failed_overlapping"] == 0
        and swap_s is not None and swap_s <= 2.0
        and (args.no_kill or res["kill"]["restarted_on_current_version"]))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("runs/bench/gateway_fleet.json"))
    args = ap.parse_args()

    from swisscheese.bundles import load_bundle, save_bundle
    from swisscheese.fileio import atomic_write_json
    from swisscheese.serve.server import free_port
    from swisscheese.store.decisions import open_gateway_store, query_decisions
    from swisscheese.store.pgtemp import TempPostgres

    model, bundle = model_and_bundle(args.model, args.bundle)
    b = load_bundle(bundle)
    swap_path = str(save_bundle(replace(b, version=b.version + 1, parent_version=b.version),
                                PREP / f"swap-v{b.version + 1}", overwrite=True).resolve())
    load1 = os.getloadavg()
    with TempPostgres(fsync=True) as pg:
        store = pg.create_database("fleet")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        PREP.mkdir(parents=True, exist_ok=True)
        with open(PREP / "gateway.log", "w") as log:
            proc = start_fleet(args, model, bundle, store, port, log)
            try:
                if not wait_until(lambda: len(workers_of(url)) == args.workers, 240):
                    print((PREP / "gateway.log").read_text()[-3000:])
                    raise SystemExit("the workers did not start")
                print(f"{args.workers} workers up at {url} on PostgreSQL; {args.clients} "
                      f"clients for {args.duration:g} s", flush=True)
                out = asyncio.run(load(url, args, swap_path))
                after: list[dict[str, Any]] = []
                if not args.no_kill:
                    victim = out["events"]["killed"]["pid"]
                    wait_until(lambda: len([w for w in workers_of(url)
                                            if w["pid"] != victim]) == args.workers, 120)
                    after = [w for w in workers_of(url) if w["pid"] != victim]
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        engine = open_gateway_store(store)
        rows = {r["id"]: r for r in query_decisions(engine)}
        engine.dispose()
    result = analyse(out, rows, args, after)
    result["load_average_before_after"] = [round(load1[0], 2), round(os.getloadavg()[0], 2)]
    result["model"], result["bundle"] = model, bundle
    for k, v in result.items():
        print(f"{k:<36} {v}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0 if result["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
