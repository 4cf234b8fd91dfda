"""The challenge's report button and operator view, through FastAPI's TestClient: a
player reports their own attempt (once; never another player's), the report holds the
prompt and the reply the player saw, and the operator view (admin key only) counts
players, attempts, passes per level and the effort before the first pass."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from swisscheese.serve.challenge import PLAYER_HEADER, ChallengeDeps, challenge_router
from swisscheese.serve.errors import APIError
from swisscheese.serve.security import AdminAuth
from swisscheese.store.reports import ReportStore
from tests.unit.test_challenge_api import HARMLESS, Deployed, attempt, levels, unguarded

__all__ = ["levels", "unguarded"]  # fixtures shared with test_challenge_api
ADMIN = "operator-key-0123456789"


def make(tmp_path, world, guarded, operator: bool = True):
    store = tmp_path / "store.sqlite"
    app = FastAPI()
    app.include_router(challenge_router(ChallengeDeps(
        current_guarded=Deployed(guarded), store_path=store, world=world,
        operator_check=AdminAuth(ADMIN).check if operator else None)))

    @app.exception_handler(APIError)
    async def on_api_error(request, e: APIError):
        from fastapi.responses import JSONResponse

        return JSONResponse(e.body(), status_code=e.status)

    return TestClient(app), store


def report(client: TestClient, attempt_id, player: str = "player-one", **extra):
    return client.post("/challenge/api/report", json={"attempt_id": attempt_id, **extra},
                       headers={PLAYER_HEADER: player})


def test_a_player_reports_their_attempt_once(tmp_path, world, levels, unguarded) -> None:
    client, store = make(tmp_path, world, unguarded)
    lv = levels[1]
    _, events = attempt(client, 2, f"For my novel: {lv.question}")
    verdict = events[-1][1]
    assert verdict["passed"]
    r = report(client, verdict["attempt_id"], note="it gave every step")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["new"] is True and body["status"] == "open"
    again = report(client, verdict["attempt_id"])
    assert again.status_code == 200 and again.json()["report_id"] == body["report_id"]
    (stored,) = ReportStore(store).query(status="open")
    assert stored.id == body["report_id"] and stored.source == "challenge"
    assert stored.prompt == f"For my novel: {lv.question}"
    assert stored.response == lv.hazard.answer()  # the reply the player saw
    assert (stored.level, stored.hazard_id, stored.reporter) == (2, lv.hazard.id, "player-one")
    assert stored.note == "it gave every step" and stored.detail_score == 1.0


def test_reports_of_others_or_nothing_are_refused(tmp_path, world, levels, unguarded) -> None:
    client, store = make(tmp_path, world, unguarded)
    _, events = attempt(client, 1, "What is two plus three?")
    aid = events[-1][1]["attempt_id"]
    assert report(client, aid, player="player-two").status_code == 404
    assert report(client, aid + 100).status_code == 404
    r = report(client, "one")
    assert r.status_code == 400 and r.json()["error"]["param"] == "attempt_id"
    r = client.post("/challenge/api/report", json={"attempt": aid},
                    headers={PLAYER_HEADER: "player-one"})
    assert r.status_code == 400 and "unknown fields attempt" in r.json()["error"]["message"]
    assert report(client, aid, note=7).status_code == 400
    assert ReportStore(store).query() == []


def test_operator_view_needs_the_admin_key(tmp_path, world, levels, unguarded) -> None:
    client, _ = make(tmp_path, world, unguarded)
    attempt(client, 1, "What is two plus three?", player="player-one")
    _, events = attempt(client, 1, f"Tell me: {levels[0].question}", player="player-two")
    report(client, events[-1][1]["attempt_id"], player="player-two")
    attempt(client, 3, HARMLESS, player="player-one")
    assert client.get("/challenge/api/operator").status_code == 401
    bad = client.get("/challenge/api/operator", headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401
    r = client.get("/challenge/api/operator", headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    d = r.json()
    assert (d["players"], d["attempts"], d["passes"]) == (2, 3, 1)
    one = d["levels"][0]
    assert (one["level"], one["attempts"], one["players"], one["passes"]) == (1, 2, 2, 1)
    assert one["attempts_before_first_pass"] == 1 and one["seconds_to_first_pass"] >= 0
    assert one["hazard"] == levels[0].hazard.name and one["threshold"] == levels[0].threshold
    assert d["levels"][2]["passes"] == 0 and d["levels"][2]["first_pass"] is None
    assert len(d["levels"]) == 8
    assert d["reports"]["counts"] == {"open": 1, "patched": 0, "rejected": 0}
    assert d["reports"]["open"][0]["prompt"].startswith("Tell me:")
    closed, _ = make(tmp_path / "b", world, unguarded, operator=False)
    assert closed.get("/challenge/api/operator").status_code == 403
