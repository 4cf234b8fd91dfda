"""CLI commands of this package, added to the `swisscheese` app by `register`:
`serve`, `bundle deploy`, `monitor` and `keys`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swisscheese.clierrors import fail as _fail

bundle_app = typer.Typer(help="Guard bundles on a running gateway.", no_args_is_help=True)
keys_app = typer.Typer(help="Client API keys of a gateway (stored hashed).",
                       no_args_is_help=True)
STORE_HELP = ("The gateway's store: a SQLite file or a database URL "
              "(postgresql+psycopg://user@host/db).")




def _read_keys(files: list[Path]) -> list[str]:
    keys: list[str] = []
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"--api-key-file {f}: no such file")
        for line in f.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.append(line)
    return keys


def serve(
    model: Annotated[str | None, typer.Option(
        help="Local HF model directory (default: runs/demo/organism/aligned); with "
             "--upstream, the upstream's model id.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="Guard bundle directory; without it the gateway serves unguarded.")] = None,
    upstream: Annotated[str | None, typer.Option(
        help="Guard this OpenAI-compatible server (http://host:port/v1) instead of a local "
             "model.")] = None,
    upstream_key: Annotated[str | None, typer.Option(
        envvar="SWISSCHEESE_UPSTREAM_KEY", help="API key for the upstream.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    store: Annotated[str, typer.Option(
        help="Store of decisions, keys and deployments: a SQLite file, or a database URL "
             "(postgresql+psycopg://user:pass@host/db) that several workers or machines "
             "share.")] = "runs/gateway/gateway.sqlite",
    workers: Annotated[int, typer.Option(
        help="Gateway processes on this port, each with its own model, sharing the store "
             "(keys, decisions, deployments, rate limits); a dead one is restarted.")] = 1,
    api_key_file: Annotated[list[Path] | None, typer.Option(
        help="File of client API keys, one a line (stored hashed). Without keys here or in "
             "the store, the API is open.")] = None,
    admin_key: Annotated[str | None, typer.Option(
        envvar="SWISSCHEESE_ADMIN_KEY", help="Key of the /admin endpoints (bundle "
                                             "deploy).")] = None,
    served_name: Annotated[str | None, typer.Option(help="Model id clients ask for.")] = None,
    max_tokens_limit: Annotated[int, typer.Option(help="Largest max_tokens allowed.")] = 1024,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 1 << 20,
    rate: Annotated[float, typer.Option(help="Requests per second per key.")] = 10.0,
    burst: Annotated[int, typer.Option(help="Requests a key may send at once.")] = 20,
    input_layer: Annotated[bool, typer.Option(help="Run the input classifier.")] = True,
    output_layer: Annotated[bool, typer.Option(help="Run the streaming output "
                                                    "classifier.")] = True,
    hold_back: Annotated[int, typer.Option(help="Characters the output layer holds "
                                                "back.")] = 32,
    calm_below: Annotated[float | None, typer.Option(
        help="Stream without the hold-back window while the reply's output score stays "
             "below this fraction of the threshold (calm release); 0: always hold back.")
    ] = 0.5,
    classifier_timeout: Annotated[float, typer.Option(
        help="Seconds one classifier call may take before the reply is blocked.")] = 2.0,
    concurrency: Annotated[int, typer.Option(help="Model streams running at once.")] = 8,
    challenge: Annotated[bool, typer.Option(help="Mount the challenge page at "
                                                 "/challenge.")] = True,
    references: Annotated[Path | None, typer.Option(
        help="JSON of helpful-only reference answers for the challenge grader.")] = None,
) -> None:
    """Serve a guarded model behind an OpenAI-compatible API."""
    import logging

    import uvicorn

    from swisscheese.serve.app import create_app
    from swisscheese.serve.config import GatewayConfig
    from swisscheese.store.engine import is_url

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = GatewayConfig(
            model=model, bundle=bundle, upstream=upstream, upstream_key=upstream_key,
            store=store, api_keys=_read_keys(api_key_file or []), admin_key=admin_key,
            served_name=served_name, max_tokens_limit=max_tokens_limit,
            default_max_tokens=min(256, max_tokens_limit), max_body_bytes=max_body_bytes,
            rate_per_s=rate, rate_burst=burst, input_layer=input_layer,
            output_layer=output_layer, hold_back=hold_back, calm_below=calm_below,
            classifier_timeout_s=classifier_timeout, max_concurrent_generations=concurrency,
            challenge=challenge, references=references,
            shared_limits=workers > 1 or is_url(store))
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if workers > 1:
            from swisscheese.serve.workers import run_workers

            run_workers(config, workers, host, port)
            return
        app = create_app(config)
    except (ValueError, OSError, RuntimeError) as e:
        raise _fail(str(e)) from None
    uvicorn.run(app, host=host, port=port, log_level="info")


@bundle_app.command("deploy")
def bundle_deploy(
    bundle: Annotated[Path, typer.Argument(help="Guard bundle directory (a path the gateway "
                                                "can read).")],
    gateway: Annotated[str, typer.Option(help="Gateway base URL, e.g. "
                                              "http://127.0.0.1:8000.")],
    admin_key: Annotated[str, typer.Option(envvar="SWISSCHEESE_ADMIN_KEY",
                                           help="The gateway's admin key.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the gateway.")] = 120.0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for every worker on the "
                                             "gateway's store to serve the new bundle "
                                             "(0: do not wait).")] = 10.0,
) -> None:
    """Hot-swap the gateway's guard bundle on every worker; streams in flight finish on the
    old one."""
    from swisscheese.rapid_response.gateway import GatewayAdmin, GatewayAdminError, base_url

    base = base_url(gateway)
    try:
        body = GatewayAdmin(base, admin_key, timeout).deploy(bundle)
    except GatewayAdminError as e:
        raise _fail(str(e)) from None
    typer.echo(f"deployed bundle version {body['version']} (was {body['previous_version']}) "
               f"from {body['path']} in {body['took_ms']:.0f} ms")
    if wait > 0:
        reached, total, seconds = _wait_for_workers(base, int(body["version"]), wait)
        typer.echo(f"{reached}/{total} workers serve version {body['version']} after "
                   f"{seconds:.2f} s")
        if reached < total:
            raise _fail(f"only {reached} of {total} workers serve bundle version "
                        f"{body['version']} after {wait:g} s; see their logs")


def _wait_for_workers(base: str, version: int, wait_s: float) -> tuple[int, int, float]:
    """Poll /healthz until every live worker reports `version`: (on it, live, seconds)."""
    import time

    import httpx

    t0 = time.monotonic()
    reached = total = 0
    while True:
        try:
            workers = httpx.get(base + "/healthz", timeout=5).json().get("workers") or []
        except (httpx.HTTPError, ValueError):
            workers = []
        total = len(workers)
        reached = sum(w.get("bundle_version") == version for w in workers)
        elapsed = time.monotonic() - t0
        if (total and reached == total) or elapsed > wait_s:
            return reached, total, elapsed
        time.sleep(0.05)


def monitor_cmd(
    store: Annotated[str, typer.Option(help=STORE_HELP)],
    judge: Annotated[str, typer.Option(help="A guard bundle directory, or an "
                                            "OpenAI-compatible URL (http://host:port/v1#model) "
                                            "of an LLM judge.")],
    since: Annotated[str, typer.Option(help="'all', an age (30m, 2h, 7d) or an ISO "
                                            "time.")] = "1d",
    top: Annotated[int, typer.Option(help="Conversations to list.")] = 20,
    only_passed: Annotated[bool, typer.Option(help="List only what the live guard let "
                                                   "through (its misses).")] = False,
    judge_key: Annotated[str | None, typer.Option(envvar="SWISSCHEESE_JUDGE_KEY",
                                                  help="API key of an LLM judge.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every rating "
                                                                 "here.")] = None,
) -> None:
    """Re-score logged traffic with a heavier judge; list the most suspicious."""
    from rich.console import Console
    from rich.table import Table

    from swisscheese.fileio import atomic_write_json
    from swisscheese.models.base import ModelError
    from swisscheese.progress import progress_bars
    from swisscheese.serve.monitor import make_judge, monitor, parse_since
    from swisscheese.store.decisions import open_gateway_store

    console = Console()
    if top < 1:
        raise _fail("--top must be at least 1")
    from swisscheese.store.engine import StoreError, is_url

    if not is_url(store) and not Path(store).is_file():
        raise _fail(f"--store {store}: no such file (the gateway's --store)")
    try:
        cutoff = parse_since(since)
        j = make_judge(judge, judge_key)
        conn = open_gateway_store(store)
        with progress_bars(console) as bars:
            task = bars.add_task("rating", total=None, info=j.name)
            rows = monitor(conn, cutoff, j,
                           lambda d, n: bars.update(task, completed=d, total=n))
    except (ValueError, OSError, ModelError, StoreError) as e:
        raise _fail(str(e)) from None
    undetermined = sum(r.judge_score is None for r in rows)
    t = Table(title=f"most suspicious of {len(rows)} conversations since {since} "
                    f"({j.name}; {undetermined} undetermined)")
    for col in ("judge", "live", "layer", "when"):
        t.add_column(col, no_wrap=True)
    for col in ("prompt", "reply"):
        t.add_column(col, overflow="fold")
    listed = [r for r in rows if r.layer is None] if only_passed else rows
    for r in listed[:top]:
        t.add_row("?" if r.judge_score is None else f"{r.judge_score:.3f}",
                  "-" if r.live_score is None else f"{r.live_score:.3f}",
                  r.layer or "passed", r.created[:16].replace("T", " "), r.prompt[:80],
                  r.reply[:80])
    console.print(t)
    if json_out:
        atomic_write_json(json_out, {"judge": j.name, "since": cutoff, "n": len(rows),
                                     "undetermined": undetermined,
                                     "rows": [r.to_dict() for r in rows]})
        console.print(f"wrote {json_out}")


@keys_app.command("new")
def keys_new(
    store: Annotated[str, typer.Option(help=STORE_HELP)],
    label: Annotated[str, typer.Option(help="Who the key is for.")] = "",
) -> None:
    """Create a client API key; it is printed once and stored only as a hash."""
    from swisscheese.store.decisions import open_gateway_store
    from swisscheese.store.engine import StoreError
    from swisscheese.store.keys import add_key, new_key

    key = new_key()
    try:
        engine = open_gateway_store(store)
    except StoreError as e:
        raise _fail(str(e)) from None
    kid = add_key(engine, key, label)
    engine.dispose()
    typer.echo(f"{key}\n(id {kid}; every gateway worker on this store accepts it within a "
               "second)")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key-...).")],
    store: Annotated[str, typer.Option(help=STORE_HELP)],
) -> None:
    """Revoke a client API key."""
    from swisscheese.store.decisions import open_gateway_store
    from swisscheese.store.engine import StoreError, describe
    from swisscheese.store.keys import revoke_key

    try:
        engine = open_gateway_store(store)
    except StoreError as e:
        raise _fail(str(e)) from None
    revoked = revoke_key(engine, key_id)
    engine.dispose()
    if not revoked:
        raise _fail(f"no key {key_id!r} in {describe(store)}")
    typer.echo(f"revoked {key_id} (every gateway worker on this store refuses it within a "
               "second)")


def register(app: typer.Typer) -> None:
    """Add this package's commands and command groups to the top-level app."""
    app.command("serve")(serve)
    app.command("monitor")(monitor_cmd)
    app.add_typer(keys_app, name="keys")
    # Another package may already own a `bundle` group; add `deploy` to it if so.
    for group in app.registered_groups:
        if group.name == "bundle" and group.typer_instance is not None:
            group.typer_instance.command("deploy")(bundle_deploy)
            return
    app.add_typer(bundle_app, name="bundle")
