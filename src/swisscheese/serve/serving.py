"""The chat-completion serving class: one guarded reply per request, streamed or whole.

The model and the guard run in a worker thread of the model pool (`guarded.GuardedStream`,
which also fails a reply closed when a classifier overruns its budget). A block ends the
reply with the refusal text and `finish_reason: "content_filter"`; a model failure ends it
with an OpenAI-style error, before any byte when it can (a 502) or as a final error event
mid-stream, never as a half reply without an end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from swisscheese.guard.pipeline import Guard
from swisscheese.models.base import GenerationParams, ModelError
from swisscheese.serve import protocol
from swisscheese.serve.errors import APIError, upstream_error
from swisscheese.serve.guarded import BLOCKED, END, ERROR, TEXT, GuardedStream
from swisscheese.serve.state import GatewayState
from swisscheese.store.decisions import DecisionRecord

log = logging.getLogger("swisscheese.serve")

# `GuardedRun.events` yields released text (TEXT), then exactly one terminal event.
RECORD_WAIT_S = 10.0  # longest a reply's end waits for its decision row to commit


class GuardedRun(GuardedStream):
    """One chat completion: the guarded stream, what it produced and released, and its
    decision record."""

    def __init__(self, state: GatewayState, guard: Guard, conversation: list[dict[str, str]],
                 params: GenerationParams, *, rid: str, key_id: str | None, stream: bool,
                 endpoint: str = "chat.completions") -> None:
        super().__init__(guard, state.model, conversation, params, executor=state.model_pool,
                         timeout_s=state.config.classifier_timeout_s)
        self.state = state
        self.rid = rid
        self.key_id = key_id
        self.stream = stream
        self.endpoint = endpoint
        self.produced: list[str] = []
        self.released: list[str] = []
        self.n_deltas = 0
        self.finish_reason: str | None = None
        self.t0 = time.perf_counter()
        self.ttft_s: float | None = None
        self._recorded = False

    def _model_error(self, e: BaseException) -> APIError:
        if self.session.decision.error is None:  # not yet recorded by the guarded loop
            self.session.fail(e)
        if self.decision is not self.session.decision:
            self.decision.error = self.session.decision.error
        if isinstance(e, ModelError):
            upstream = self.state.config.upstream
            hint = (f"check that the upstream server at {upstream} is up and serves "
                    f"this model" if upstream else "see the gateway log")
            return upstream_error(f"{e}; {hint}")
        log.error("model backend failed on %s", self.rid, exc_info=e)
        return APIError(500, f"the model failed on this request ({type(e).__name__}); see "
                        f"the gateway log for request {self.rid}", "server_error",
                        code="model_error")

    def _released(self, text: str) -> tuple[str, str]:
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.t0
        self.released.append(text)
        return TEXT, text

    async def events(self) -> AsyncGenerator[tuple[str, Any], None]:
        """Released text events, then one of END (finish_reason), BLOCKED or ERROR."""
        self.state.metrics.in_flight.inc()
        try:
            async for kind, value in self.raw_events():
                if kind == TEXT:
                    delta, out = value
                    self.produced.append(delta)
                    self.n_deltas += bool(delta)  # a hidden-state step may carry no text
                    if out:
                        yield self._released(out)
                elif kind == BLOCKED:
                    if value:
                        self.produced.append(value)
                    yield BLOCKED, None
                elif kind == END:
                    if value:
                        yield self._released(value)
                    self.finish_reason = ("length" if self.n_deltas >= self.params.max_new_tokens
                                          else "stop")
                    yield END, self.finish_reason
                else:
                    yield ERROR, self._model_error(value)
        finally:
            self.state.metrics.in_flight.dec()

    # -- the record ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        d = self.decision
        return {"blocked": d.blocked, "layer": d.layer, "input_score": d.input_score,
                "output_score": d.output_score, "bundle_version": d.bundle_version,
                "error": d.error}

    def usage(self) -> dict[str, int]:
        """OpenAI's `usage` of this reply: the model's tokens (what it produced, released
        or not), counted by its tokenizer where it has one (see `protocol.usage`)."""
        return protocol.usage(self.state.model, self.conversation, "".join(self.produced),
                              self.n_deltas)

    async def record_durably(self, status: str, sent: str) -> None:
        """Record the decision and wait until it is committed (bounded): sent before a
        reply's last byte, so a reply the client got whole always has its row."""
        self._recorded = True
        future = self.record(status, sent)
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), RECORD_WAIT_S)
        except Exception as e:  # noqa: BLE001 - counted by the writer; the reply goes on
            log.error("decision %s not confirmed written: %s", self.rid, e)

    def record_once(self, status: str, sent: str) -> None:
        if not self._recorded:
            self._recorded = True
            self.record(status, sent)

    def record(self, status: str, sent: str) -> Any:
        """Enqueue the decision row; returns the writer's future (done once committed)."""
        d = self.decision
        latency = dict(d.latency_ms)
        if self.ttft_s is not None:
            latency["ttft_gateway"] = round(self.ttft_s * 1000, 3)
        latency["request"] = round((time.perf_counter() - self.t0) * 1000, 3)
        m = self.state.metrics
        if d.blocked:
            m.blocks.labels(d.layer or "error").inc()
        for layer in ("input", "output"):
            if layer in latency and self._guarded:
                m.guard_latency.labels(layer).observe(latency[layer] / 1000)
        if self.ttft_s is not None:
            m.ttft.observe(self.ttft_s)
        return self.state.writer.record(DecisionRecord(
            id=self.rid, endpoint=self.endpoint, conversation=self.conversation, status=status,
            key_id=self.key_id, model=self.state.served_name, stream=self.stream,
            blocked=d.blocked, layer=d.layer, input_score=d.input_score,
            output_score=d.output_score, error=d.error, bundle_version=d.bundle_version,
            produced_chars=sum(map(len, self.produced)),
            released_chars=sum(map(len, self.released)), hold_back=self.guard.hold_back,
            finish_reason=self.finish_reason, latency_ms=latency,
            reply="".join(self.produced), sent=sent, categories=d.categories,
            stages=d.stages))


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class ChatServing:
    """POST /v1/chat/completions for one gateway state."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    def start(self, conversation: list[dict[str, str]], params: GenerationParams, *,
              key_id: str | None, stream: bool) -> GuardedRun:
        # The guard is read once here; a hot swap later does not touch this reply.
        return GuardedRun(self.state, self.state.guard, conversation, params,
                          rid=protocol.completion_id(), key_id=key_id, stream=stream)

    async def complete(self, run: GuardedRun) -> Response:
        created = protocol.now_s()
        status, sent = "ok", ""
        events = run.events()
        try:
            text: list[str] = []
            async for kind, value in events:
                if kind == TEXT:
                    text.append(value)
                elif kind == ERROR:
                    status = "error"
                    return JSONResponse(value.body(), status_code=value.status)
                elif kind == BLOCKED:
                    status, sent = "blocked", run.guard.refusal
                    run.finish_reason = "content_filter"
                else:
                    sent = "".join(text)
            body = protocol.completion(run.rid, self.state.served_name, created, sent,
                                       run.finish_reason or "stop", run.summary(),
                                       usage=run.usage())
            await events.aclose()
            await run.record_durably(status, sent)
            return JSONResponse(body)
        except asyncio.CancelledError:
            status = "client_closed"
            raise
        finally:
            await events.aclose()
            run.record_once(status, sent)

    async def stream(self, run: GuardedRun, include_usage: bool = False) -> Response:
        events = run.events()
        # Wait for the first event before answering, so that a backend that is down gets a
        # proper error status rather than a 200 stream that ends in an error.
        try:
            first = await anext(events)
        except BaseException as e:
            await events.aclose()
            run.record("client_closed" if isinstance(e, asyncio.CancelledError) else "error", "")
            raise
        if first[0] == ERROR:
            await events.aclose()
            run.record("error", "")
            return JSONResponse(first[1].body(), status_code=first[1].status)
        return StreamingResponse(self._sse(run, first, events, include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _sse(self, run: GuardedRun, first: tuple[str, Any],
                   events: AsyncGenerator[tuple[str, Any], None],
                   include_usage: bool = False) -> AsyncIterator[bytes]:
        name, created = self.state.served_name, protocol.now_s()
        sent: list[str] = []
        status = "client_closed"

        def piece(delta: dict[str, str], finish: str | None = None,
                  extra: dict[str, Any] | None = None) -> bytes:
            c = protocol.chunk(run.rid, name, created, delta, finish, extra)
            if include_usage:
                c["usage"] = None  # OpenAI's shape: null until the usage chunk
            return sse(c)

        try:
            yield piece({"role": "assistant", "content": ""})
            kind, value = first
            while True:
                if kind == TEXT:
                    sent.append(value)
                    yield piece({"content": value})
                elif kind == BLOCKED:
                    run.finish_reason = "content_filter"
                    sent.append(run.guard.refusal)
                    yield piece({"content": run.guard.refusal})
                    yield piece({}, "content_filter", run.summary())
                    status = "blocked"
                    break
                elif kind == END:
                    yield piece({}, value, run.summary())
                    status = "ok"
                    break
                else:
                    status = "error"
                    yield sse(value.body())
                    return
                kind, value = await anext(events)
            if include_usage:
                yield sse(protocol.usage_chunk(run.rid, name, created, run.usage()))
            await events.aclose()
            await run.record_durably(status, "".join(sent))
            yield sse("[DONE]")
        finally:
            await events.aclose()
            run.record_once(status, "".join(sent))
