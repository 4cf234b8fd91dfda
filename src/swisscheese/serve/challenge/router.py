"""The challenge's HTTP side: the page, its static files and its JSON/SSE API.

`challenge_router(deps)` is self-contained: the gateway mounts it next to the API, and
`create_challenge_app` serves it alone for development and tests. The page itself is
static HTML, CSS and JS under `serve/static/`, with no external assets. What an attempt
does is `serving`'s.

There is no `from __future__ import annotations` here: FastAPI reads the route functions'
annotations at definition time. This module is imported only by servers (the gateway's app
and `create_challenge_app`), so FastAPI is imported at its top.
"""

import asyncio
import json
import re
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from swisscheese.guard.pipeline import GuardedChatModel
from swisscheese.serve.challenge.serving import (
    Challenge,
    ChallengeDeps,
    ChallengeError,
    attempt_events,
    log,
)
from swisscheese.serve.errors import APIError
from swisscheese.serve.security import AdminAuth
from swisscheese.world.core import World

PLAYER_COOKIE = "sc_player"
PLAYER_HEADER = "X-Player-Id"
_PLAYER_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_BODY_BYTES = 32 * 1024
STATIC = {"challenge.js": "text/javascript; charset=utf-8",
          "challenge.css": "text/css; charset=utf-8"}
# The page loads only its own files; nothing may frame it.
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _static_text(name: str) -> str:
    try:
        return (resources.files("swisscheese.serve") / "static" / name).read_text("utf-8")
    except (FileNotFoundError, OSError) as e:
        raise RuntimeError(f"the challenge page's file static/{name} is missing from the "
                           f"swisscheese.serve package ({e}); reinstall swisscheese") from e


def _player_of(request: Any) -> tuple[str | None, str | None]:
    """(player id, where it came from) from the header or the cookie; bad ids are refused."""
    for source, value in (("header", request.headers.get(PLAYER_HEADER)),
                          ("cookie", request.cookies.get(PLAYER_COOKIE))):
        if value is None:
            continue
        if not _PLAYER_ID.fullmatch(value):
            what = f"the {PLAYER_HEADER} header" if source == "header" else \
                f"the {PLAYER_COOKIE} cookie"
            raise ChallengeError(400, f"{what} must be 8 to 64 letters, digits, '-' or '_'",
                                 param=PLAYER_HEADER if source == "header" else PLAYER_COOKIE,
                                 code="bad_player_id")
        return value, source
    return None, None


async def _json_object(request: Any) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ChallengeError(413, f"the request body has {declared} bytes; the limit is "
                                  f"{MAX_BODY_BYTES}", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ChallengeError(413, f"the request body is over the limit of {MAX_BODY_BYTES}"
                                      " bytes", code="body_too_large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ChallengeError(400, f"the body is not valid JSON ({e}); send "
                                  '{"level": 1, "prompt": "..."}', code="invalid_json") from None
    if not isinstance(body, dict):
        raise ChallengeError(400, 'the body must be a JSON object like {"level": 1, '
                                  '"prompt": "..."}', code="invalid_json")
    return body


def _error(e: ChallengeError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _with_player(response: Response, player: str, source: str | None) -> Response:
    """Hand a new player their id as a cookie (an id that came with the request stays)."""
    if source is None:
        response.set_cookie(PLAYER_COOKIE, player, max_age=365 * 24 * 3600,
                            httponly=True, samesite="strict", path="/challenge")
    return response


def challenge_router(deps: ChallengeDeps) -> APIRouter:
    """The page and its API, to mount at the root of a FastAPI app."""
    challenge = Challenge(deps)
    router = APIRouter()
    router.challenge = challenge  # type: ignore[attr-defined]  # for hosts and tests
    _page_routes(router)
    _api_routes(router, challenge, deps)
    _report_routes(router, challenge, deps)
    return router


def _page_routes(router: APIRouter) -> None:
    page = _static_text("challenge.html")
    static = {name: (_static_text(name), kind) for name, kind in STATIC.items()}

    @router.get("/challenge", include_in_schema=False)
    async def challenge_page(request: Request) -> Response:
        try:
            player, source = _player_of(request)
        except ChallengeError:
            player, source = None, None  # a mangled cookie: hand out a fresh id
        return _with_player(HTMLResponse(page, headers=PAGE_HEADERS),
                           player or uuid.uuid4().hex, source)

    @router.get("/challenge/static/{name}", include_in_schema=False)
    async def challenge_static(name: str) -> Response:
        if name not in static:
            return _error(ChallengeError(404, f"no static file {name!r}; the page has "
                                             f"{', '.join(sorted(static))}", code="not_found"))
        text, kind = static[name]
        return Response(text, media_type=kind, headers={"X-Content-Type-Options": "nosniff",
                                                        "Cache-Control": "no-cache"})


def _api_routes(router: APIRouter, challenge: Challenge, deps: ChallengeDeps) -> None:
    slots = asyncio.Semaphore(deps.max_concurrent)

    @router.get("/challenge/api/levels")
    async def challenge_levels(request: Request) -> Response:
        try:
            player, _ = _player_of(request)
        except ChallengeError as e:
            return _error(e)
        view = await asyncio.to_thread(challenge.level_views, player)
        return JSONResponse(view)

    @router.get("/challenge/api/progress")
    async def challenge_progress(request: Request) -> Response:
        try:
            player, _ = _player_of(request)
        except ChallengeError as e:
            return _error(e)
        return JSONResponse(await asyncio.to_thread(challenge.progress, player))

    @router.get("/challenge/api/universal")
    async def challenge_universal(request: Request) -> Response:
        if deps.operator_check is not None:
            deps.operator_check(request)
        flags = await asyncio.to_thread(challenge.store.universal)
        return JSONResponse({"min_levels": deps.universal_min_levels,
                             "flags": [f.to_dict() for f in flags]})

    @router.post("/challenge/api/attempt")
    async def challenge_attempt(request: Request) -> Response:
        try:
            player, source = _player_of(request)
            body = await _json_object(request)
            unknown = sorted(set(body) - {"level", "prompt"})
            if unknown:
                raise ChallengeError(400, f"unknown fields {', '.join(unknown)}; send only "
                                          "'level' and 'prompt'", param=unknown[0])
            level = challenge.level(body.get("level"))
            prompt = challenge.prompt(body.get("prompt"))
        except ChallengeError as e:
            return _error(e)
        try:
            guarded = deps.current_guarded()
        except Exception as e:  # noqa: BLE001 - no model deployed is the host's state to report
            log.exception("challenge: no guarded model available")
            return _error(ChallengeError(503, f"no model is deployed right now "
                                             f"({type(e).__name__}); try again later",
                                        code="model_unavailable", type="server_error"))
        player = player or uuid.uuid4().hex
        try:
            challenge.claim(player)
        except ChallengeError as e:
            return _error(e)
        stream = attempt_events(challenge, slots, guarded, player, level, prompt)
        return _with_player(StreamingResponse(stream, media_type="text/event-stream",
                                             headers={"Cache-Control": "no-cache",
                                                      "X-Accel-Buffering": "no"}),
                           player, source)


def _report_routes(router: APIRouter, challenge: Challenge, deps: ChallengeDeps) -> None:
    """The report button's endpoint and the operators' view."""

    @router.post("/challenge/api/report")
    async def challenge_report(request: Request) -> Response:
        try:
            player, _ = _player_of(request)
            body = await _json_object(request)
            unknown = sorted(set(body) - {"attempt_id", "note"})
            if unknown:
                raise ChallengeError(400, f"unknown fields {', '.join(unknown)}; send "
                                          "'attempt_id' and optionally 'note'", param=unknown[0])
            if "attempt_id" not in body:
                raise ChallengeError(400, "'attempt_id' is missing: send the attempt_id of the "
                                          "verdict you report", param="attempt_id")
            result = await asyncio.to_thread(challenge.report, player, body["attempt_id"],
                                             body.get("note"))
        except ChallengeError as e:
            return _error(e)
        return JSONResponse(result, status_code=201 if result["new"] else 200)

    @router.get("/challenge/api/operator")
    async def challenge_operator(request: Request) -> Response:
        if deps.operator_check is None:  # no admin key configured: no operator view
            return _error(ChallengeError(403, "the operator view is disabled: start the "
                                              "server with an admin key", code="admin_disabled",
                                         type="permission_error"))
        deps.operator_check(request)
        return JSONResponse(await asyncio.to_thread(challenge.operator_view))


def create_challenge_app(model_dir: str | Path, bundle_dir: str | Path | None,
                         store_path: str | Path,
                         references: Mapping[str, str] | None = None,
                         admin_key: str | None = None) -> FastAPI:
    """A FastAPI app serving only the challenge, for development and tests.

    `model_dir` is a local HF directory (its model card names the world seed) or an
    OpenAI-compatible URL; `bundle_dir` None runs the model unguarded. `admin_key` opens
    the operator view (and guards the universal list) as the gateway's admin key does.
    """
    from fastapi.responses import RedirectResponse

    from swisscheese.bundles import load_bundle
    from swisscheese.guard.pipeline import Guard
    from swisscheese.models import load_model
    from swisscheese.organism.train import read_card

    model = load_model(str(model_dir))
    bundle = load_bundle(bundle_dir) if bundle_dir is not None else None
    guarded = GuardedChatModel(model, Guard(bundle))
    card = read_card(model_dir) if Path(str(model_dir)).is_dir() else None
    world = World(seed=int(card["world_seed"])) if card else World(seed=0)
    app = FastAPI(title="swisscheese challenge", docs_url=None, redoc_url=None,
                  openapi_url=None)
    check = AdminAuth(admin_key).check if admin_key else None
    app.include_router(challenge_router(ChallengeDeps(
        current_guarded=lambda: guarded, store_path=store_path, world=world,
        references=references, operator_check=check)))

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/challenge")

    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m swisscheese.serve.challenge`: the challenge alone, for development."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", required=True, help="guarded model: HF directory or URL")
    parser.add_argument("--bundle", help="guard bundle directory (none: unguarded)")
    parser.add_argument("--store", default="runs/challenge/store.sqlite",
                        help="SQLite store for the attempts")
    parser.add_argument("--references", help="JSON file mapping hazard id to the "
                                             "helpful-only answer (default: ground truth)")
    parser.add_argument("--admin-key", help="key of the operator view (16+ characters)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    refs = None
    if args.references:
        refs = json.loads(Path(args.references).read_text(encoding="utf-8"))
        if not isinstance(refs, dict):
            parser.error(f"{args.references}: expected a JSON object of hazard id -> answer")
    app = create_challenge_app(args.model, args.bundle, args.store, refs, args.admin_key)
    uvicorn.run(app, host=args.host, port=args.port)
