"""`create_app`: the gateway as a FastAPI app (routes, errors, metrics, the challenge)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swisscheese.bundles import GuardBundle
from swisscheese.models.base import ChatModel
from swisscheese.serve.config import GatewayConfig
from swisscheese.serve.errors import APIError, error_body
from swisscheese.serve.metrics import GatewayMetrics
from swisscheese.serve.routes import admin_router, api_router
from swisscheese.serve.state import GatewayState, load_backend

log = logging.getLogger("swisscheese.serve")

ENDPOINTS = ("/v1/chat/completions", "/v1/models", "/v1/moderations", "/healthz", "/metrics",
             "/admin/bundle", "/admin/jailbreaks", "/admin/jailbreaks/resolve")


class RequestMetrics:
    """Counts every response by path and status, and times it (pure ASGI, so streams
    are not buffered)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, worker: str = "") -> None:
        self.app = app
        self.metrics = metrics
        # Which worker answered (behind a load balancer, or `serve --workers`).
        self.worker_header = (b"x-swisscheese-worker", worker.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  self.worker_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - t0)


def _error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def create_app(config: GatewayConfig, *, model: ChatModel | None = None,
               bundle: GuardBundle | None = None) -> FastAPI:
    """The gateway for `config`. `model` and `bundle` override what the config names
    (already loaded objects: benchmarks share one model between two gateways)."""
    from swisscheese.store.decisions import open_gateway_store

    # The store first: one that cannot be reached, or is newer than this code, fails the
    # start in a second, before a model is loaded and before anything is written.
    engine = open_gateway_store(config.store)
    try:
        state = GatewayState(config, model if model is not None else load_backend(config),
                             bundle, owns_model=model is None, engine=engine)
    except BaseException:
        engine.dispose()
        raise

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="swisscheese gateway", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.gateway = state
    app.include_router(api_router(state))
    app.include_router(admin_router(state))
    _mount_challenge(app, state)

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, e: APIError) -> JSONResponse:
        return _error_response(e)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error_response(APIError(400, f"invalid request: {e.errors()[0].get('msg')}"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 404:
            message = (f"no such endpoint {request.url.path}; this gateway serves "
                       f"{', '.join(ENDPOINTS)}")
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(e.detail)
        return JSONResponse(error_body(message, "invalid_request_error"),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=e)
        return JSONResponse(error_body("internal error in the gateway; see its log",
                                       "server_error", code="internal_error"), status_code=500)

    app.add_middleware(RequestMetrics, metrics=state.metrics, worker=state.sync.worker_id)
    return app


def _mount_challenge(app: FastAPI, state: GatewayState) -> None:
    """Include the challenge page when the config asks for it (a failure to build it fails
    the start: a gateway that was asked for the page does not come up without it)."""
    if not state.config.challenge:
        return
    from swisscheese.serve.challenge import challenge_router

    app.include_router(challenge_router(state.challenge_deps()))
