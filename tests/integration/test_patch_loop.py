"""Closing the loop on a live gateway: jailbreaks reported through the admin API become a
patched bundle that `swisscheese patch --from-gateway --deploy` hot-swaps in, and the
reports are marked patched by its version.

Real parts: uvicorn on loopback, the gateway app, its SQLite store, the small trained
guard bundle, `patch` through the CLI, the official `openai` client for moderation. The
model behind the gateway is a scripted double: moderation reads only the classifiers.
"""

from __future__ import annotations

import httpx
import openai
from typer.testing import CliRunner

from swisscheese.data.converters import stack
from swisscheese.serve.app import create_app
from swisscheese.serve.config import GatewayConfig
from swisscheese.serve.server import serve_in_background
from tests.integration.test_gateway import BENIGN_REPLY, ScriptedModel
from tests.unit.test_patch import ATTACK, PREFIX, REQUESTS

ADMIN = "admin-key-0123456789abcdef"


def reports() -> list[dict[str, str]]:
    """Hazard requests of the world (fictional) in a code language the small bundle
    misses (Caesar shift, then reversed), as test_patch reports them."""
    s = stack(list(ATTACK))
    return [{"prompt": PREFIX + s.encode(r), "note": f"report {i}"}
            for i, r in enumerate(REQUESTS, 1)]


def flags(url: str) -> list[bool]:
    mod = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    return [x.flagged for x in mod.moderations.create(
        input=[m["prompt"] for m in reports()]).results]


def test_reports_to_a_deployed_patch(tmp_path, small_bundle_dir) -> None:
    from swisscheese.cli import app as cli

    cfg = GatewayConfig(store=tmp_path / "gw.sqlite", admin_key=ADMIN, bundle=small_bundle_dir,
                        served_name="organism", challenge=False, rate_per_s=1000.0,
                        rate_burst=1000)
    app = create_app(cfg, model=ScriptedModel(BENIGN_REPLY))
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with serve_in_background(app) as url:
        before = httpx.get(url + "/admin/bundle", headers=auth).json()
        flagged_before = flags(url)
        # Bad input names the field and stores nothing.
        bad = httpx.post(url + "/admin/jailbreaks", headers=auth,
                         json={"reports": [reports()[0], {"prompt": "  "}]})
        assert bad.status_code == 400 and "reports[1]" in bad.json()["error"]["message"]
        assert httpx.post(url + "/admin/jailbreaks", json={"prompt": "x"}).status_code == 401
        r = httpx.post(url + "/admin/jailbreaks", headers=auth,
                       json={"reports": reports()})
        assert r.status_code == 201, r.text
        ids = r.json()["ids"]
        listed = httpx.get(url + "/admin/jailbreaks", headers=auth).json()
        assert [x["id"] for x in listed["reports"]] == ids
        assert all(x["bundle_version"] == before["version"] for x in listed["reports"])

        out = CliRunner().invoke(cli, ["patch", "--from-gateway", url, "--deploy", url,
                                       "--admin-key", ADMIN, "--out",
                                       str(tmp_path / "patched"), "--n-requests", "100"])
        assert out.exit_code == 0, out.output
        assert f"deployed bundle version {before['version'] + 1}" in out.output
        assert "marked 3 report(s) patched" in out.output

        now = httpx.get(url + "/admin/bundle", headers=auth).json()
        assert now["version"] == before["version"] + 1 and now["parent_version"] == \
            before["version"]
        assert now["path"] == str((tmp_path / "patched").resolve())
        done = httpx.get(url + "/admin/jailbreaks", headers=auth,
                         params={"status": "patched"}).json()["reports"]
        assert [(x["id"], x["patched_version"]) for x in done] == \
            [(i, now["version"]) for i in ids]
        assert httpx.get(url + "/admin/jailbreaks", headers=auth).json()["reports"] == []
        bad = httpx.post(url + "/admin/jailbreaks/resolve", headers=auth,
                         json={"ids": [ids[0], 999], "status": "rejected"})
        assert bad.status_code == 400 and "no report 999" in bad.json()["error"]["message"]
        assert httpx.get(url + "/admin/jailbreaks", headers=auth,
                         params={"status": "rejected"}).json()["reports"] == []
        # The live gateway, on the patched bundle, flags more of what was reported.
        assert sum(flags(url)) > sum(flagged_before), (flags(url), flagged_before)
        # Nothing left to patch: a clear one-line error, and no bundle written.
        again = CliRunner().invoke(cli, ["patch", "--from-gateway", url, "--admin-key", ADMIN,
                                         "--out", str(tmp_path / "again")])
        assert again.exit_code == 1 and "no open jailbreak reports" in again.output
        assert not (tmp_path / "again").exists()
