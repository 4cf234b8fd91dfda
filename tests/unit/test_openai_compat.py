"""OpenAIChatModel against a real loopback HTTP server speaking the OpenAI wire format."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from swisscheese.models.base import ChatModel, EndpointError, GenerationParams, Message
from swisscheese.models.openai_compat import OpenAIChatModel, normalise_base_url, ping

REPLY_DELTAS = ["Hello", " there", ",", " world", "!"]
REPLY = "".join(REPLY_DELTAS)


@dataclass
class ServerState:
    """Switches and records shared between a test and the handler thread."""

    models: list[str] = field(default_factory=lambda: ["tiny-model", "other-model"])
    deltas: list[str] = field(default_factory=lambda: list(REPLY_DELTAS))
    # mode: ok | 401 | 404model | badjson | cut | errorchunk
    mode: str = "ok"
    fail_500: int = 0
    fail_429: int = 0
    chat_calls: int = 0
    models_calls: int = 0
    last_body: dict[str, Any] | None = None
    last_headers: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None, **headers: str) -> None:
        err = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        self._json(status, {"error": err}, {k.replace("_", "-"): v for k, v in headers.items()})

    def do_GET(self) -> None:
        state = self.server.state
        if self.path != "/v1/models":
            self._json(404, {"detail": "Not Found"})
            return
        with state.lock:
            state.models_calls += 1
        data = [{"id": m, "object": "model", "owned_by": "test"} for m in state.models]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        with state.lock:
            state.chat_calls += 1
            state.last_body = body
            state.last_headers = {k.lower(): v for k, v in self.headers.items()}
            fail_500 = state.fail_500 > 0
            fail_429 = not fail_500 and state.fail_429 > 0
            if fail_500:
                state.fail_500 -= 1
            elif fail_429:
                state.fail_429 -= 1
        if fail_500:
            self._error(500, "engine overloaded")
        elif fail_429:
            self._error(429, "rate limited", retry_after="0")
        elif state.mode == "401":
            self._error(401, "Incorrect API key provided", code="invalid_api_key")
        elif state.mode == "404model":
            self._error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        elif state.mode == "badjson":
            data = b"<html>gateway hiccup</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif body.get("stream"):
            self._sse(body, state)
        else:
            self._json(200, completion(body, "".join(state.deltas)))

    def _sse(self, body: dict[str, Any], state: ServerState) -> None:
        # HTTP/1.0 without Content-Length: the body ends when we close, as a cut stream would.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b": keep-alive\n\n")
        for i, delta in enumerate(state.deltas):
            d = {"role": "assistant", "content": delta} if i == 0 else {"content": delta}
            self._event(chunk(body, d, None))
            if state.mode == "errorchunk" and i == 1:
                self._event({"error": {"message": "engine died mid-stream"}})
                return
        if state.mode == "cut":
            return
        self._event(chunk(body, {}, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


def completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": body.get("model"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = ServerState()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading at a stop string hangs up mid-stream; that is expected.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeServer]:
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


@pytest.fixture
def server(_server: FakeServer) -> FakeServer:
    _server.state = ServerState()
    return _server


@pytest.fixture
def model(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIChatModel]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    m = OpenAIChatModel(server.base_url, model="tiny-model", max_retries=3, backoff=0.01)
    yield m
    m.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- happy paths -------------------------------------------------------------------------------


def test_satisfies_chat_model_protocol(model: OpenAIChatModel) -> None:
    assert isinstance(model, ChatModel)
    assert model.name == "tiny-model"


def test_generate_returns_assistant_message(model: OpenAIChatModel, server: FakeServer) -> None:
    reply = model.generate("hi")
    assert reply == Message("assistant", REPLY)
    assert server.state.last_body is not None
    assert server.state.last_body["messages"] == [{"role": "user", "content": "hi"}]
    assert "stream" not in server.state.last_body


def test_params_are_sent_in_request_body(model: OpenAIChatModel, server: FakeServer) -> None:
    params = GenerationParams(max_new_tokens=7, temperature=0.3, top_p=0.9, seed=42, stop=["\n"])
    conversation = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]
    model.generate(conversation, params)
    body = server.state.last_body
    assert body is not None
    assert body["model"] == "tiny-model"
    assert body["messages"] == conversation
    assert body["max_tokens"] == 7
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["seed"] == 42
    assert body["stop"] == ["\n"]


def test_seed_and_stop_omitted_when_unset(model: OpenAIChatModel, server: FakeServer) -> None:
    model.generate("hi", GenerationParams())
    body = server.state.last_body
    assert body is not None
    assert "seed" not in body and "stop" not in body
    assert body["temperature"] == 0.0


def test_stream_deltas_join_to_full_text(model: OpenAIChatModel, server: FakeServer) -> None:
    deltas = list(model.stream("hi"))
    assert deltas == REPLY_DELTAS
    assert "".join(deltas) == model.generate("hi").content
    assert server.state.last_body is not None


def test_stream_sends_stream_true(model: OpenAIChatModel, server: FakeServer) -> None:
    list(model.stream("hi", GenerationParams(seed=1)))
    body = server.state.last_body
    assert body is not None and body["stream"] is True and body["seed"] == 1


def test_stop_is_applied_even_if_server_ignores_it(
    model: OpenAIChatModel, server: FakeServer
) -> None:
    # The stop string "END" is split across deltas, so the stream must hold back "E".
    server.state.deltas = ["Hello E", "ND more"]
    params = GenerationParams(stop=["END"])
    assert model.generate("hi", params).content == "Hello "
    assert "".join(model.stream("hi", params)) == "Hello "


def test_generate_batch_keeps_order(model: OpenAIChatModel, server: FakeServer) -> None:
    replies = model.generate_batch(["a", "b", "c", "d", "e"])
    assert [r.content for r in replies] == [REPLY] * 5
    assert server.state.chat_calls == 5


def test_api_key_from_env_is_sent(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIChatModel(server.base_url, model="tiny-model") as m:
        m.generate("hi")
    assert server.state.last_headers["authorization"] == "Bearer sk-test"


# -- model resolution --------------------------------------------------------------------------


def test_model_is_resolved_from_models_endpoint(server: FakeServer) -> None:
    with OpenAIChatModel(server.base_url, backoff=0.01) as m:
        assert server.state.models_calls == 0  # lazy
        m.generate("hi")
        m.generate("again")
        assert m.name == "tiny-model"
    assert server.state.last_body is not None
    assert server.state.last_body["model"] == "tiny-model"
    assert server.state.models_calls == 1


def test_name_property_resolves(server: FakeServer) -> None:
    with OpenAIChatModel(server.base_url) as m:
        assert m.name == "tiny-model"


def test_no_models_listed_is_a_clear_error(server: FakeServer) -> None:
    server.state.models = []
    with OpenAIChatModel(server.base_url, backoff=0.01) as m:
        with pytest.raises(EndpointError, match="lists no models.*model="):
            m.generate("hi")
        assert m.name == server.base_url  # falls back to the URL


def test_list_models_and_ping(model: OpenAIChatModel, server: FakeServer) -> None:
    assert model.list_models() == ["tiny-model", "other-model"]
    assert ping(server.base_url) == ["tiny-model", "other-model"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
        ("https://api.example.com/openai", "https://api.example.com/openai/v1"),
        ("http://h:1/v1/chat/completions", "http://h:1/v1"),
    ],
)
def test_base_url_normalisation(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected


def test_base_url_without_v1_reaches_server(server: FakeServer) -> None:
    root = server.base_url.removesuffix("/v1")
    with OpenAIChatModel(root + "/", model="tiny-model") as m:
        assert m.generate("hi").content == REPLY


def test_bad_base_url_is_rejected() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIChatModel("127.0.0.1:8000")


# -- failures ----------------------------------------------------------------------------------


def test_retries_5xx_then_succeeds(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.fail_500 = 2
    assert model.generate("hi").content == REPLY
    assert server.state.chat_calls == 3


def test_stream_retries_5xx_then_succeeds(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.fail_500 = 1
    assert "".join(model.stream("hi")) == REPLY
    assert server.state.chat_calls == 2


def test_5xx_gives_up_after_max_retries(server: FakeServer) -> None:
    server.state.fail_500 = 10
    with OpenAIChatModel(server.base_url, model="tiny-model", max_retries=1, backoff=0.01) as m:
        with pytest.raises(EndpointError) as info:
            m.generate("hi")
    msg = str(info.value)
    assert server.state.chat_calls == 2
    assert "/v1/chat/completions: 500 Internal Server Error: engine overloaded" in msg
    assert msg.endswith("(after 1 retry)")


def test_429_honours_retry_after(server: FakeServer) -> None:
    server.state.fail_429 = 2
    # A 5 s backoff would blow the time budget; Retry-After: 0 must override it.
    with OpenAIChatModel(server.base_url, model="tiny-model", backoff=5.0) as m:
        start = time.monotonic()
        assert m.generate("hi").content == REPLY
    assert time.monotonic() - start < 2.0
    assert server.state.chat_calls == 3


def test_no_retry_on_401(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.mode = "401"
    with pytest.raises(EndpointError) as info:
        model.generate("hi")
    msg = str(info.value)
    assert server.state.chat_calls == 1
    assert msg.startswith(f"{server.base_url}/chat/completions: 401 Unauthorized: ")
    assert "Incorrect API key provided" in msg
    assert "\n" not in msg


def test_model_not_found(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.mode = "404model"
    with pytest.raises(EndpointError, match="model 'tiny-model' not found"):
        model.generate("hi")
    assert server.state.chat_calls == 1


def test_connection_refused_names_the_url() -> None:
    port = closed_port()
    with OpenAIChatModel(f"http://127.0.0.1:{port}", model="m", max_retries=1, backoff=0.01) as m:
        with pytest.raises(EndpointError) as info:
            m.generate("hi")
        msg = str(info.value)
        assert f"cannot reach http://127.0.0.1:{port}/v1" in msg
        assert "connection refused (after 1 retry)" in msg
        with pytest.raises(EndpointError, match="cannot reach"):
            list(m.stream("hi"))


def test_invalid_json_response(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.mode = "badjson"
    with pytest.raises(EndpointError, match="/v1/chat/completions: response is not valid JSON"):
        model.generate("hi")


def test_cut_stream_raises(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.mode = "cut"
    got: list[str] = []
    with pytest.raises(EndpointError, match="stream was cut"):
        for delta in model.stream("hi"):
            got.append(delta)
    assert "".join(got) == REPLY  # what arrived before the cut was still delivered


def test_error_event_in_stream_raises(model: OpenAIChatModel, server: FakeServer) -> None:
    server.state.mode = "errorchunk"
    with pytest.raises(EndpointError, match="engine died mid-stream"):
        list(model.stream("hi"))
