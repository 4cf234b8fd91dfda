"""The gateway's admin API, as rapid response and the CLI call it (over HTTP only).

    admin = GatewayAdmin("http://127.0.0.1:8000", admin_key)
    reports = admin.open_reports()          # GET  /admin/jailbreaks?status=open
    body = admin.deploy("runs/patched")     # POST /admin/bundle  (hot swap)
    admin.resolve([r.line for r in reports], body["version"])   # marked patched

Every failure is a `GatewayAdminError` with one line naming the URL and what the gateway
said (its OpenAI-style error message), never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swisscheese.rapid_response.reports import ReportedJailbreak


class GatewayAdminError(RuntimeError):
    """A gateway that cannot be reached or refused an admin call; names the URL."""


def base_url(url: str) -> str:
    """The gateway's root URL, whether given with or without /v1."""
    return url.rstrip("/").removesuffix("/v1")


class GatewayAdmin:
    """A client of one gateway's admin endpoints (the admin key as a bearer token)."""

    def __init__(self, url: str, admin_key: str, timeout_s: float = 120.0) -> None:
        if not admin_key:
            raise GatewayAdminError(f"{url}: an admin key is needed (--admin-key)")
        self.base = base_url(url)
        self.headers = {"Authorization": f"Bearer {admin_key}"}
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        url = self.base + path
        try:
            r = httpx.request(method, url, headers=self.headers, timeout=self.timeout_s,
                              **kwargs)
        except httpx.HTTPError as e:
            raise GatewayAdminError(f"cannot reach the gateway at {url}: {e}") from None
        try:
            body = r.json()
        except ValueError:
            raise GatewayAdminError(f"{url}: {r.status_code} {r.reason_phrase} (not a "
                                    "swisscheese gateway?)") from None
        if r.status_code >= 400:
            message = body.get("error", {}).get("message") if isinstance(body, dict) else None
            raise GatewayAdminError(f"{url}: {r.status_code}: {message or r.text[:200]}")
        return body

    def bundle(self) -> dict[str, Any]:
        """What the gateway serves now (version, path, thresholds, deployments)."""
        return dict(self._call("GET", "/admin/bundle"))

    def deploy(self, bundle_dir: str | Path) -> dict[str, Any]:
        """Hot-swap the gateway onto `bundle_dir` (a path on the gateway's machine)."""
        return dict(self._call("POST", "/admin/bundle",
                               json={"path": str(Path(bundle_dir).resolve())}))

    def report(self, prompt: str, response: str | None = None, note: str = "") -> int:
        """Report one jailbreak; returns its id."""
        body = self._call("POST", "/admin/jailbreaks",
                          json={"prompt": prompt, "response": response, "note": note})
        return int(body["ids"][0])

    def reports(self, status: str = "open", limit: int = 1000) -> list[dict[str, Any]]:
        """The reports with `status` ("open", "patched", "rejected" or "all")."""
        body = self._call("GET", "/admin/jailbreaks",
                          params={"status": status, "limit": limit})
        return list(body["reports"])

    def open_reports(self, limit: int = 1000) -> list[ReportedJailbreak]:
        """The open reports as rapid response reads them; `line` is the report id."""
        return [ReportedJailbreak(r["prompt"], r.get("response") or None, int(r["id"]))
                for r in self.reports("open", limit)]

    def resolve(self, ids: list[int], version: int, status: str = "patched") -> int:
        """Mark reports patched by bundle `version` (or rejected); returns how many."""
        body = self._call("POST", "/admin/jailbreaks/resolve",
                          json={"ids": ids, "status": status, "patched_version": version})
        return int(body["resolved"])
