"""`swisscheese serve --workers 2` on a real PostgreSQL, called with the official client.

Two worker processes (each its own tiny HF model and guard bundle) share the store: a
key made with `keys new` works on both within a second and a revoked one stops, a
`bundle deploy` reaches both, /healthz lists both with their bundle versions, /metrics
adds up over both, `usage` is filled in, and a worker killed with SIGKILL comes back on
the current bundle.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from swisscheese.cli import app
from swisscheese.serve.server import free_port
from swisscheese.store.decisions import count_decisions, open_gateway_store

KEY = "sk-test-key-0123456789"
ADMIN = "admin-key-0123456789abcdef"
runner = CliRunner()


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def workers_of(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/healthz", timeout=5).json()["workers"]


def answered_by(url: str, key: str, n: int = 12) -> dict[str, int]:
    """Status codes by worker over `n` requests, each on a new connection (the kernel
    hands new connections to either worker)."""
    seen: dict[str, int] = {}
    for _ in range(n):
        r = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                      timeout=10)
        seen.setdefault(r.headers["x-swisscheese-worker"], r.status_code)
        if seen[r.headers["x-swisscheese-worker"]] != r.status_code:
            seen[r.headers["x-swisscheese-worker"]] = -1  # mixed: not settled
    return seen


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, postgres, tiny_model_dir: Path, small_bundle_dir: Path):
    tmp = tmp_path_factory.mktemp("fleet")
    url_db = postgres.create_database("fleet")
    (tmp / "keys.txt").write_text(KEY + "\n")
    port = free_port()
    log = open(tmp / "gateway.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "swisscheese.cli", "serve", "--workers", "2", "--model",
         str(tiny_model_dir), "--bundle", str(small_bundle_dir), "--store", url_db,
         "--port", str(port), "--admin-key", ADMIN, "--api-key-file", str(tmp / "keys.txt"),
         "--served-name", "organism", "--no-challenge", "--rate", "1000", "--burst", "1000"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and len(workers_of(url)) == 2, 180,
                 "two workers")
        yield url, url_db, tmp, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_two_workers_share_keys_deployments_metrics_and_survive_a_kill(
        fleet, small_bundle_dir: Path, tmp_path: Path) -> None:
    from swisscheese.bundles import load_bundle, save_bundle

    url, url_db, _, _ = fleet
    v1 = load_bundle(small_bundle_dir)
    assert {w["bundle_version"] for w in workers_of(url)} == {v1.version}
    c = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)

    # usage, whole and streamed (OpenAI's include_usage shape).
    reply = c.chat.completions.create(model="organism", max_tokens=8,
                                      messages=[{"role": "user", "content": "What is 2+3?"}])
    u = reply.usage
    assert u is not None and u.prompt_tokens > 0 and u.total_tokens == \
        u.prompt_tokens + u.completion_tokens
    chunks = list(c.chat.completions.create(
        model="organism", max_tokens=8, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is 2+3?"}]))
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == u.prompt_tokens
    assert chunks[-1].usage.completion_tokens >= 1
    assert all(ch.usage is None for ch in chunks[:-1])

    # A new key works on every worker within a second; a revoked one stops.
    out = runner.invoke(app, ["keys", "new", "--store", url_db, "--label", "bob"])
    assert out.exit_code == 0, out.output
    key, kid = out.output.split()[0], re.search(r"id (key-\w+)", out.output).group(1)
    t0 = time.monotonic()
    wait_for(lambda: (s := answered_by(url, key)) and len(s) == 2 and set(s.values()) == {200},
             5, "the new key on both workers")
    assert time.monotonic() - t0 < 1.5
    assert runner.invoke(app, ["keys", "revoke", kid, "--store", url_db]).exit_code == 0
    wait_for(lambda: (s := answered_by(url, key)) and len(s) == 2 and set(s.values()) == {401},
             5, "the revoked key refused on both workers")

    # A deployment sent to one worker reaches both.
    v2 = save_bundle(replace(v1, version=v1.version + 1, parent_version=v1.version),
                     tmp_path / "bundle-v2")
    out = runner.invoke(app, ["bundle", "deploy", str(v2), "--gateway", url, "--admin-key",
                              ADMIN])
    assert out.exit_code == 0, out.output
    assert f"2/2 workers serve version {v1.version + 1}" in out.output
    assert {w["bundle_version"] for w in workers_of(url)} == {v1.version + 1}

    # Metrics add up over the workers: every chat completion so far is counted once.
    engine = open_gateway_store(url_db)
    served = count_decisions(engine)
    metrics = httpx.get(url + "/metrics", timeout=10).text
    counted = sum(float(m) for m in re.findall(
        r'swisscheese_requests_total\{endpoint="/v1/chat/completions",status="200"\} (\S+)',
        metrics))
    assert served == 2 and counted == 2
    assert len(re.findall(r"^swisscheese_bundle_version\{", metrics, re.M)) == 2

    # SIGKILL one worker: the supervisor starts another, which serves the current bundle.
    victim = workers_of(url)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: len([w for w in workers_of(url) if w["pid"] != victim["pid"]]) == 2,
             120, "two live workers again")
    assert {w["bundle_version"] for w in workers_of(url)
            if w["pid"] != victim["pid"]} == {v1.version + 1}
    reply = c.chat.completions.create(model="organism", max_tokens=4,
                                      messages=[{"role": "user", "content": "hi"}])
    assert reply.swisscheese["bundle_version"] == v1.version + 1
    engine.dispose()
