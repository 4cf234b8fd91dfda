"""The gateway's CLI commands on bad input: one clear line, exit code 1, nothing served."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from swisscheese.cli import app
from swisscheese.serve.server import free_port
from swisscheese.store.decisions import open_gateway_store
from swisscheese.store.keys import active_key_hashes, key_hash

runner = CliRunner()


def test_serve_names_what_is_wrong(tmp_path: Path) -> None:
    r = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope"), "--store",
                            str(tmp_path / "s.sqlite")])
    assert r.exit_code == 1 and "does not exist" in r.output
    up = f"http://127.0.0.1:{free_port()}/v1"
    r = runner.invoke(app, ["serve", "--upstream", up, "--model", "m", "--bundle",
                            str(tmp_path / "missing-bundle"), "--store",
                            str(tmp_path / "s.sqlite")])
    assert r.exit_code == 1 and "missing-bundle" in r.output
    r = runner.invoke(app, ["serve", "--upstream", up, "--api-key-file",
                            str(tmp_path / "keys.txt")])
    assert r.exit_code == 1 and "keys.txt: no such file" in r.output


def test_keys_new_stores_only_a_hash(tmp_path: Path) -> None:
    store = tmp_path / "gw.sqlite"
    r = runner.invoke(app, ["keys", "new", "--store", str(store), "--label", "alice"])
    assert r.exit_code == 0, r.output
    key = r.output.split()[0]
    assert key_hash(key) in active_key_hashes(open_gateway_store(store))
    assert key.encode() not in store.read_bytes()
    r = runner.invoke(app, ["keys", "revoke", "key-000000000000", "--store", str(store)])
    assert r.exit_code == 1 and "no key 'key-000000000000'" in r.output


def test_bundle_deploy_with_no_gateway_listening(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = runner.invoke(app, ["bundle", "deploy", str(tmp_path), "--gateway", url,
                            "--admin-key", "k" * 20])
    assert r.exit_code == 1 and "cannot reach the gateway" in r.output


def test_monitor_needs_an_existing_store(tmp_path: Path) -> None:
    r = runner.invoke(app, ["monitor", "--store", str(tmp_path / "none.sqlite"), "--judge",
                            str(tmp_path)])
    assert r.exit_code == 1 and "no such file" in r.output


def test_serve_refuses_an_unreachable_or_newer_store_before_anything_is_written(
        tmp_path: Path) -> None:
    from sqlalchemy import text

    port = free_port()
    for workers in ("1", "2"):
        r = runner.invoke(app, ["serve", "--upstream", f"http://127.0.0.1:{port}/v1",
                                "--model", "m", "--workers", workers, "--store",
                                f"postgresql+psycopg://gw:pw@127.0.0.1:{port}/gw"])
        assert r.exit_code == 1 and "cannot reach the store at" in r.output, r.output
        assert "pw@" not in r.output
    store = tmp_path / "gw.sqlite"
    engine = open_gateway_store(store)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_versions SET version = 99 "
                          "WHERE component = 'gateway-keys'"))
    engine.dispose()
    before = store.read_bytes()
    r = runner.invoke(app, ["keys", "new", "--store", str(store)])
    assert r.exit_code == 1 and "'gateway-keys' tables are at version 99" in r.output
    r = runner.invoke(app, ["serve", "--upstream", f"http://127.0.0.1:{port}/v1", "--model",
                            "m", "--store", str(store)])
    assert r.exit_code == 1 and "upgrade swisscheese" in r.output
    assert store.read_bytes() == before
