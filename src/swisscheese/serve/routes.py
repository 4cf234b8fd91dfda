"""The gateway's HTTP routes: thin functions that check who and what, then hand over to
the serving classes."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from swisscheese.models.base import GenerationParams
from swisscheese.serve import protocol
from swisscheese.serve.errors import APIError, bad_request
from swisscheese.serve.moderation import moderate
from swisscheese.serve.security import check_max_tokens, read_json_body
from swisscheese.serve.serving import ChatServing
from swisscheese.serve.state import GatewayState

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Any) -> M:
    """Parse a request body, turning the first validation problem into a 400 that names
    the field."""
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got "
                          f"{type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        where = f"{param}: " if param else ""
        raise bad_request(f"invalid request: {where}{msg}", param=param,
                          code="invalid_value") from None


async def _caller(state: GatewayState, request: Request) -> str | None:
    """Authenticate and rate-limit; returns the key id (None when the API is open)."""
    kid = state.keys.authenticate(request)
    who = kid or f"ip:{request.client.host if request.client else 'unknown'}"
    if state.limiter.shared:  # a statement on the store: off the event loop
        await asyncio.to_thread(state.limiter.check, who)
    else:
        state.limiter.check(who)
    return kid


def api_router(state: GatewayState) -> APIRouter:
    router = APIRouter()
    serving = ChatServing(state)
    cfg = state.config

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        kid = await _caller(state, request)
        req = validated(protocol.ChatCompletionRequest,
                        await read_json_body(request, cfg.max_body_bytes))
        if req.model != state.served_name:
            raise APIError(404, f"model {req.model!r} is not served here; this gateway serves "
                           f"{state.served_name!r} (GET /v1/models)", "invalid_request_error",
                           param="model", code="model_not_found")
        max_tokens = check_max_tokens(req.requested_max_tokens(), cfg.max_tokens_limit,
                                      cfg.default_max_tokens)
        params = GenerationParams(max_new_tokens=max_tokens, temperature=req.temperature or 0.0,
                                  top_p=req.top_p or 1.0, seed=req.seed, stop=req.stops())
        run = serving.start([m.to_message() for m in req.messages], params, key_id=kid,
                            stream=req.stream)
        if req.stream:
            return await serving.stream(run, include_usage=req.include_usage())
        return await serving.complete(run)

    @router.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        await _caller(state, request)
        return protocol.model_list([state.served_name], protocol.now_s())

    @router.post("/v1/moderations")
    async def moderations(request: Request) -> dict[str, Any]:
        kid = await _caller(state, request)
        req = validated(protocol.ModerationRequest,
                        await read_json_body(request, cfg.max_body_bytes))
        return await moderate(state, req, kid)

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # Every live worker on the store, as their heartbeats say (this one included).
        return {"status": "ok", "model": state.served_name,
                "bundle_version": state.bundle_version, "layers": state.guard.layers,
                "upstream": cfg.upstream, "worker": state.sync.worker_info(),
                "workers": await asyncio.to_thread(state.sync.fleet)}

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    return router


def admin_router(state: GatewayState) -> APIRouter:
    router = APIRouter(prefix="/admin")

    @router.post("/bundle")
    async def deploy_bundle(request: Request) -> JSONResponse:
        state.admin.check(request)
        body = await read_json_body(request, state.config.max_body_bytes)
        path = body.get("path") if isinstance(body, dict) else None
        if not isinstance(path, str) or not path.strip():
            raise bad_request("send {\"path\": \"<guard bundle directory on the gateway's "
                              "machine>\"}", param="path")
        return JSONResponse(await state.deploy(path.strip()))

    @router.get("/bundle")
    async def current_bundle(request: Request) -> dict[str, Any]:
        state.admin.check(request)
        return {**state.bundle_info(), "deployments": state.deployments()}

    _jailbreak_routes(router, state)
    return router


REPORT_FIELDS = ("prompt", "response", "conversation", "note", "reporter")


def _new_report(raw: Any, where: str, bundle_version: int | None) -> Any:
    """One reported jailbreak of an admin call (checked by the store's own rules); it is
    taken to have got through the bundle deployed now."""
    from swisscheese.store.reports import NewReport, ReportError

    if not isinstance(raw, dict):
        raise bad_request(f"{where}: expected an object with 'prompt'", param=where)
    unknown = sorted(set(raw) - set(REPORT_FIELDS))
    if unknown:
        raise bad_request(f"{where}: unknown field(s) {', '.join(unknown)}; fields: "
                          f"{', '.join(REPORT_FIELDS)}", param=f"{where}.{unknown[0]}")
    conv = raw.get("conversation") or []
    if not isinstance(conv, list):
        raise bad_request(f"{where}.conversation: expected a list of messages",
                          param=f"{where}.conversation")
    report = NewReport(source="admin", prompt=raw.get("prompt"),  # type: ignore[arg-type]
                       reporter=str(raw.get("reporter") or "admin"),
                       response=raw.get("response"), conversation=conv,
                       note=raw.get("note") or "", bundle_version=bundle_version)
    try:
        report.check()
    except ReportError as e:
        raise bad_request(f"{where}.{e}", param=where) from None
    return report


def _jailbreak_routes(router: APIRouter, state: GatewayState) -> None:
    """Reported jailbreaks, for operators and for `swisscheese patch --from-gateway`."""
    from swisscheese.store.reports import STATUSES, ReportError

    @router.post("/jailbreaks")
    async def report_jailbreaks(request: Request) -> JSONResponse:
        state.admin.check(request)
        body = await read_json_body(request, state.config.max_body_bytes)
        if isinstance(body, dict) and "reports" in body:
            items = body["reports"]
            if not isinstance(items, list) or not items or set(body) != {"reports"}:
                raise bad_request("send {\"reports\": [{\"prompt\": ...}, ...]} or one "
                                  "report object", param="reports")
            reports = [_new_report(r, f"reports[{i}]", state.bundle_version)
                       for i, r in enumerate(items)]
        else:
            reports = [_new_report(body, "body", state.bundle_version)]
        ids = [(await asyncio.to_thread(state.reports.add, r))[0] for r in reports]
        return JSONResponse({"ids": ids, "status": "open"}, status_code=201)

    @router.get("/jailbreaks")
    async def list_jailbreaks(request: Request, status: str | None = "open",
                              after_id: int = 0, limit: int = 1000) -> dict[str, Any]:
        state.admin.check(request)
        wanted = None if status in (None, "", "all") else status
        try:
            rows = await asyncio.to_thread(state.reports.query, wanted, after_id, limit)
        except ReportError as e:
            raise bad_request(f"{e} (or 'all')", param="status") from None
        return {"reports": [r.to_dict() for r in rows],
                "counts": await asyncio.to_thread(state.reports.counts),
                "statuses": list(STATUSES)}

    @router.post("/jailbreaks/resolve")
    async def resolve_jailbreaks(request: Request) -> dict[str, Any]:
        state.admin.check(request)
        body = await read_json_body(request, state.config.max_body_bytes)
        if not isinstance(body, dict):
            raise bad_request("send {\"ids\": [...], \"status\": \"patched\", "
                              "\"patched_version\": N}")
        ids, version = body.get("ids"), body.get("patched_version")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                 for i in ids):
            raise bad_request("ids: expected a list of report ids", param="ids")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise bad_request("patched_version: expected an integer", param="patched_version")
        try:
            n = await asyncio.to_thread(state.reports.resolve, ids, str(body.get("status")),
                                        version)
        except ReportError as e:
            raise bad_request(str(e), param=str(e).split(":", 1)[0]) from None
        return {"resolved": n, "status": body.get("status"), "patched_version": version}
