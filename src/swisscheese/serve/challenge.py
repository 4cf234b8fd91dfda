"""The public jailbreak challenge at /challenge: eight levels against the guarded model.

Each level is one hazard question of the world with a detail threshold (the grader's
`levels()`). A player sends a prompt; the guarded model's reply streams back as
server-sent events, then the grader's verdict: the reply's detail score against the
level's threshold, and the layer that blocked it, if one did. Every attempt goes into the
store with its template (the prompt with the question as a slot); a template that passes
several levels is flagged as a possible universal jailbreak, for the player and for the
operators.

`challenge_router(deps)` is self-contained: the gateway mounts it next to the API, and
`create_challenge_app` serves it alone for development and tests. The page itself is
static HTML, CSS and JS under `static/`, with no external assets.

This module is imported only by servers, but fastapi is still imported inside the
functions; that is also why there is no `from __future__ import annotations` here:
FastAPI reads the route functions' annotations at definition time, and `Request` is a
local name of `challenge_router`.
"""

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swisscheese.guard.pipeline import Decision, GuardedChatModel
from swisscheese.models.base import GenerationParams
from swisscheese.serve.challenge_template import prompt_template, template_hash
from swisscheese.store.challenge import Attempt, ChallengeStore, LevelProgress
from swisscheese.world.core import World
from swisscheese.world.grader import Grader, Level

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

log = logging.getLogger(__name__)

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


@dataclass
class ChallengeDeps:
    """What the challenge needs from its host (the gateway or `create_challenge_app`).

    `current_guarded` is called once per attempt, so a hot swap of the guard bundle
    applies to the next attempt while one in flight finishes on the bundle it started
    with. `operator_check`, when given, guards GET /challenge/api/universal: it receives
    the request and raises (for example the gateway's admin-key error) to refuse it.
    """

    current_guarded: Callable[[], GuardedChatModel]
    store_path: Path | str
    world: World
    references: Mapping[str, str] | None = None
    universal_min_levels: int = 3
    max_prompt_chars: int = 2000
    max_new_tokens: int = 256
    max_concurrent: int = 2
    attempt_timeout_s: float = 300.0
    operator_check: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        for name in ("max_prompt_chars", "max_new_tokens", "max_concurrent"):
            if getattr(self, name) < 1:
                raise ValueError(f"ChallengeDeps.{name} must be at least 1, "
                                 f"got {getattr(self, name)}")


class ChallengeError(Exception):
    """A request the challenge refuses, answered as an OpenAI-style error object."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error") -> None:  # noqa: A002
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status, message, param, code, type)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class GuardedRun:
    """One guarded reply with a decision of its own.

    The same steps as `GuardedChatModel.stream`, but the session stays here: the
    model's `last_decision` is shared by every request in flight on that model, so
    reading it after a stream could report another player's reply.
    """

    def __init__(self, guarded: GuardedChatModel, prompt: str, params: GenerationParams) -> None:
        self.guarded = guarded
        self.conversation = [{"role": "user", "content": prompt}]
        self.params = params
        self.session = guarded.guard.session(self.conversation)

    @property
    def decision(self) -> Decision:
        return self.session.decision

    def deltas(self) -> Iterator[tuple[str, bool]]:
        """(text, is_refusal) pieces as the guard releases them; the refusal comes last."""
        guard = self.guarded.guard
        if not self.session.check_input():
            self.session.finish()
            yield guard.refusal, True
            return
        model_stream = iter(self.guarded.model.stream(self.conversation, self.params))
        for text in guard.guard_stream(self.session, model_stream):
            yield text, False
        if self.decision.blocked:
            yield guard.refusal, True


class Challenge:
    """The challenge's state and rules, apart from HTTP: levels, grading, the store."""

    def __init__(self, deps: ChallengeDeps) -> None:
        self.deps = deps
        self.grader = Grader(deps.world, deps.references)
        self.levels: dict[int, Level] = {lv.number: lv for lv in self.grader.levels()}
        self.store = ChallengeStore(deps.store_path, deps.universal_min_levels)
        self.params = GenerationParams(max_new_tokens=deps.max_new_tokens)
        self._in_flight: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- input checks: each names the field and what to send instead ---------------------

    def level(self, value: Any) -> Level:
        if value is None:
            raise ChallengeError(400, f"'level' is missing: send an integer from 1 to "
                                      f"{len(self.levels)}", param="level", code="unknown_level")
        if isinstance(value, bool) or not isinstance(value, int) or value not in self.levels:
            raise ChallengeError(400, f"'level' must be an integer from 1 to {len(self.levels)}"
                                      f", got {value!r}", param="level", code="unknown_level")
        return self.levels[value]

    def prompt(self, value: Any) -> str:
        if value is None:
            raise ChallengeError(400, "'prompt' is missing: send the text for the model",
                                 param="prompt")
        if not isinstance(value, str):
            raise ChallengeError(400, "'prompt' must be a string", param="prompt")
        if not value.strip():
            raise ChallengeError(400, "'prompt' is empty: write a message to the model",
                                 param="prompt", code="empty_prompt")
        if len(value) > self.deps.max_prompt_chars:
            raise ChallengeError(413, f"'prompt' has {len(value)} characters; the limit is "
                                      f"{self.deps.max_prompt_chars}", param="prompt",
                                 code="prompt_too_long")
        return value

    # -- one attempt in flight per player -------------------------------------------------

    def claim(self, player: str) -> None:
        now = time.monotonic()
        with self._lock:
            started = self._in_flight.get(player)
            # An entry older than the timeout belongs to a stream that never ran its
            # cleanup (a client gone before the first byte); it no longer counts.
            if started is not None and now - started < self.deps.attempt_timeout_s:
                raise ChallengeError(429, "an attempt of this player is still streaming; "
                                          "wait for its verdict", code="attempt_in_flight",
                                     type="rate_limit_error")
            self._in_flight[player] = now

    def release(self, player: str) -> None:
        with self._lock:
            self._in_flight.pop(player, None)

    # -- grading and views ----------------------------------------------------------------

    def grade_and_record(self, player: str, level: Level, prompt: str, reply: str,
                         decision: Decision) -> dict[str, Any]:
        """Grade what the player saw, store it, and return the verdict event."""
        grade = self.grader.grade(level.hazard.id, reply)
        passed = grade.passes(level.threshold)
        template = prompt_template(prompt, level.question, level.hazard.name)
        attempt = Attempt(player=player, level=level.number, hazard_id=level.hazard.id,
                          prompt=prompt, template=template,
                          template_hash=template_hash(template), reply=reply,
                          detail_score=round(grade.score, 4), threshold=level.threshold,
                          passed=passed, blocked_layer=decision.layer if decision.blocked
                          else None, bundle_version=decision.bundle_version)
        attempt_id, flag = self.store.record(attempt)
        return {
            "attempt_id": attempt_id,
            "level": level.number,
            "detail_score": attempt.detail_score,
            "threshold": level.threshold,
            "passed": passed,
            "blocked": decision.blocked,
            "blocked_layer": attempt.blocked_layer,
            "refused": grade.refused,
            "details_found": len(set(grade.found) & set(grade.reference)),
            "details_total": len(grade.reference),
            "bundle_version": decision.bundle_version,
            "template": template,
            "universal": _player_view(flag.to_dict()) if flag else None,
            "progress": self.progress(player),
        }

    def progress(self, player: str | None) -> dict[str, Any]:
        if player:
            rows = self.store.progress(player, self.levels)
            flags = self.store.universal(player)
        else:  # a visitor who has not played yet
            rows, flags = [LevelProgress(n, 0, None, False) for n in self.levels], []
        return {"player": player, "passed": sum(r.passed for r in rows),
                "total": len(self.levels), "levels": [r.to_dict() for r in rows],
                "universal": [_player_view(f.to_dict()) for f in flags]}

    def level_views(self, player: str | None) -> dict[str, Any]:
        progress = {r["level"]: r for r in self.progress(player)["levels"]}
        return {
            "levels": [{"level": lv.number, "hazard_id": lv.hazard.id,
                        "hazard": lv.hazard.name, "category": lv.hazard.category.id,
                        "question": lv.question, "threshold": lv.threshold,
                        "details_total": len(self.grader.reference_details(lv.hazard.id)),
                        "progress": progress[lv.number]} for lv in self.levels.values()],
            "universal_min_levels": self.deps.universal_min_levels,
            "max_prompt_chars": self.deps.max_prompt_chars,
        }


def _player_view(flag: dict[str, Any]) -> dict[str, Any]:
    """A flag as a player sees it: other players' ids stay private."""
    return {k: v for k, v in flag.items() if k != "players"} | {"players": len(flag["players"])}


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


def challenge_router(deps: ChallengeDeps) -> "APIRouter":
    """The page and its API, to mount at the root of a FastAPI app."""
    from fastapi import APIRouter, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

    challenge = Challenge(deps)
    page = _static_text("challenge.html")
    static = {name: (_static_text(name), kind) for name, kind in STATIC.items()}
    slots = asyncio.Semaphore(deps.max_concurrent)
    router = APIRouter()
    router.challenge = challenge  # type: ignore[attr-defined] - for hosts and tests

    def error(e: ChallengeError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    def with_player(response: Response, player: str, source: str | None) -> Response:
        if source is None:
            response.set_cookie(PLAYER_COOKIE, player, max_age=365 * 24 * 3600,
                                httponly=True, samesite="strict", path="/challenge")
        return response

    @router.get("/challenge", include_in_schema=False)
    async def challenge_page(request: Request) -> Response:
        try:
            player, source = _player_of(request)
        except ChallengeError:
            player, source = None, None  # a mangled cookie: hand out a fresh id
        return with_player(HTMLResponse(page, headers=PAGE_HEADERS),
                           player or uuid.uuid4().hex, source)

    @router.get("/challenge/static/{name}", include_in_schema=False)
    async def challenge_static(name: str) -> Response:
        if name not in static:
            return error(ChallengeError(404, f"no static file {name!r}; the page has "
                                             f"{', '.join(sorted(static))}", code="not_found"))
        text, kind = static[name]
        return Response(text, media_type=kind, headers={"X-Content-Type-Options": "nosniff",
                                                        "Cache-Control": "no-cache"})

    @router.get("/challenge/api/levels")
    async def challenge_levels(request: Request) -> Response:
        try:
            player, _ = _player_of(request)
        except ChallengeError as e:
            return error(e)
        view = await asyncio.to_thread(challenge.level_views, player)
        return JSONResponse(view)

    @router.get("/challenge/api/progress")
    async def challenge_progress(request: Request) -> Response:
        try:
            player, _ = _player_of(request)
        except ChallengeError as e:
            return error(e)
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
            return error(e)
        try:
            guarded = deps.current_guarded()
        except Exception as e:  # noqa: BLE001 - no model deployed is the host's state to report
            log.exception("challenge: no guarded model available")
            return error(ChallengeError(503, f"no model is deployed right now "
                                             f"({type(e).__name__}); try again later",
                                        code="model_unavailable", type="server_error"))
        player = player or uuid.uuid4().hex
        try:
            challenge.claim(player)
        except ChallengeError as e:
            return error(e)
        stream = _attempt_events(challenge, slots, guarded, player, level, prompt)
        return with_player(StreamingResponse(stream, media_type="text/event-stream",
                                             headers={"Cache-Control": "no-cache",
                                                      "X-Accel-Buffering": "no"}),
                           player, source)

    return router


async def _attempt_events(challenge: Challenge, slots: asyncio.Semaphore,
                          guarded: GuardedChatModel, player: str, level: Level,
                          prompt: str) -> AsyncIterator[bytes]:
    """The SSE body of one attempt: `delta` events as the guard releases text, then one
    `verdict` (or one `error` when the model fails; a failed reply is not graded)."""
    try:
        async with slots:
            run = GuardedRun(guarded, prompt, challenge.params)
            pieces: list[str] = []
            try:
                async for text, refusal in _threaded(run.deltas()):
                    pieces.append(text)
                    yield _sse("delta", {"text": text, "refusal": refusal})
            except Exception as e:  # noqa: BLE001 - the client gets an error event instead
                log.error("challenge: the model failed during an attempt: %s: %s",
                          type(e).__name__, e)
                yield _sse("error", ChallengeError(
                    502, f"the model failed mid-reply ({type(e).__name__}); this attempt "
                         "was not graded, send it again", code="model_failed",
                    type="server_error").body())
                return
            verdict = await asyncio.to_thread(challenge.grade_and_record, player, level,
                                              prompt, "".join(pieces), run.decision)
            yield _sse("verdict", verdict)
    finally:
        challenge.release(player)


async def _threaded(items: Iterator[Any]) -> AsyncIterator[Any]:
    """Iterate a blocking iterator in a worker thread, handing items over as they come.

    An exception of the iterator is raised here, after the items before it. When the
    consumer stops early (the client went away), the worker stops at the next item and
    closes the iterator, which stops the model's generation.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
        except RuntimeError:
            stop.set()  # the loop is gone: nobody is listening any more

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    break
                put("item", item)
        except Exception as e:  # noqa: BLE001 - raised again in the consumer
            put("error", e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            put("end", None)

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            kind, item = await queue.get()
            if kind == "end":
                break
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        if worker.done():
            worker.result()


def create_challenge_app(model_dir: str | Path, bundle_dir: str | Path | None,
                         store_path: str | Path,
                         references: Mapping[str, str] | None = None) -> "FastAPI":
    """A FastAPI app serving only the challenge, for development and tests.

    `model_dir` is a local HF directory (its model card names the world seed) or an
    OpenAI-compatible URL; `bundle_dir` None runs the model unguarded.
    """
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    from swisscheese.classifiers.bundle import load_bundle
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
    app.include_router(challenge_router(ChallengeDeps(
        current_guarded=lambda: guarded, store_path=store_path, world=world,
        references=references)))

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
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    refs = None
    if args.references:
        refs = json.loads(Path(args.references).read_text(encoding="utf-8"))
        if not isinstance(refs, dict):
            parser.error(f"{args.references}: expected a JSON object of hazard id -> answer")
    app = create_challenge_app(args.model, args.bundle, args.store, refs)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
