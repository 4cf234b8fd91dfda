"""A chat model served by any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, hosted APIs).

Talks the chat-completions wire format with httpx directly, so the only dependency is httpx.
Every failure surfaces as an `EndpointError` whose one-line message names the URL and the cause.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from types import TracebackType
from typing import Any

import httpx

from swisscheese.models.base import (
    ConversationLike,
    EndpointError,
    GenerationParams,
    Message,
    as_messages,
    cut_at_stop,
    stop_filtered,
)

__all__ = ["OpenAIChatModel", "ping"]

MAX_RETRY_AFTER_S = 10.0
# The OpenAI API rejects more than 4 stop sequences; the rest are applied on our side.
MAX_WIRE_STOPS = 4
MAX_BATCH_WORKERS = 4
_SNIPPET_CHARS = 120


def normalise_base_url(base_url: str) -> str:
    """Return `base_url` without a trailing slash and with a path ending in /v1."""
    url = httpx.URL(base_url.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"base_url must be an http(s) URL like http://127.0.0.1:8000/v1, got {base_url!r}"
        )
    path = url.path.rstrip("/")
    # People often paste the full endpoint; keep only the API root.
    for suffix in ("/chat/completions", "/completions", "/models"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    if not path.endswith("/v1"):
        path += "/v1"
    return str(url.copy_with(path=path, query=None, fragment=None))


class OpenAIChatModel:
    """A `ChatModel` backed by an OpenAI-compatible /v1/chat/completions endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        client: httpx.Client | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if backoff < 0:
            raise ValueError("backoff must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._base_url = normalise_base_url(base_url)
        self._model = model or None
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._model_lock = threading.Lock()
        self._name_lookup_failed = False
        # Indirection so tests and callers can replace the sleep between retries.
        self._sleep = time.sleep

    # -- identity -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def name(self) -> str:
        """The model id, asking /models once if none was given; the base URL if that fails."""
        if self._model is None and not self._name_lookup_failed:
            try:
                # One attempt only: reading a name must not stall for the whole retry schedule.
                self._resolve_model(retries=0)
            except EndpointError:
                self._name_lookup_failed = True
        return self._model or self._base_url

    @name.setter
    def name(self, value: str) -> None:
        # ChatModel declares `name` as a plain attribute, so it has to be writable to conform.
        self._model = value or None
        self._name_lookup_failed = False

    def __repr__(self) -> str:
        return f"OpenAIChatModel(base_url={self._base_url!r}, model={self._model!r})"

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIChatModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- models ---------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        """Return the model ids the server lists at /models."""
        return self._list_models(retries=None)

    def _list_models(self, retries: int | None) -> list[str]:
        url = self._url("/models")
        response = self._request("GET", "/models", retries=retries)
        data = self._json(url, response)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise EndpointError(f"{url}: unexpected response, no 'data' list of models")
        return [str(m["id"]) for m in items if isinstance(m, dict) and m.get("id")]

    def _resolve_model(self, retries: int | None = None) -> str:
        if self._model is not None:
            return self._model
        with self._model_lock:
            if self._model is None:
                ids = self._list_models(retries)
                if not ids:
                    raise EndpointError(
                        f"{self._url('/models')}: server lists no models; pass model= explicitly"
                    )
                self._model = ids[0]
                self._name_lookup_failed = False
        return self._model

    # -- generation -----------------------------------------------------------------------------

    def generate(
        self, conversation: ConversationLike, params: GenerationParams | None = None
    ) -> Message:
        """Return the whole assistant reply."""
        params = params or GenerationParams()
        body = self._body(conversation, params, stream=False)
        url = self._url("/chat/completions")
        response = self._request("POST", "/chat/completions", body=body)
        data = self._json(url, response)
        _raise_if_error_payload(url, data)
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                f"{url}: unexpected response, no choices[0].message in {_snippet(response.text)}"
            ) from None
        content = message.get("content") if isinstance(message, dict) else None
        # Reasoning or tool-calling servers may send null content; that is an empty reply.
        text = content if isinstance(content, str) else ""
        text, _ = cut_at_stop(text, params.stop)
        return Message("assistant", text)

    def stream(
        self, conversation: ConversationLike, params: GenerationParams | None = None
    ) -> Iterator[str]:
        """Yield the reply as text deltas, as the server sends them."""
        params = params or GenerationParams()
        body = self._body(conversation, params, stream=True)
        return self._stream(body, params.stop)

    def _stream(self, body: dict[str, Any], stop: Sequence[str]) -> Iterator[str]:
        url = self._url("/chat/completions")
        response = self._request("POST", "/chat/completions", body=body, stream=True)
        try:
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type and "json" in content_type:
                # Some servers ignore stream=true and answer with one whole completion.
                response.read()
                data = self._json(url, response)
                _raise_if_error_payload(url, data)
                try:
                    text = data["choices"][0]["message"].get("content") or ""
                except (KeyError, IndexError, TypeError, AttributeError):
                    raise EndpointError(
                        f"{url}: unexpected response, no choices[0].message"
                    ) from None
                text, _ = cut_at_stop(text, stop)
                if text:
                    yield text
                return
            yield from stop_filtered(_sse_deltas(url, response), stop)
        finally:
            response.close()

    def generate_batch(
        self, conversations: Sequence[ConversationLike], params: GenerationParams | None = None
    ) -> list[Message]:
        """Generate replies for many conversations, a few requests at a time, in order."""
        params = params or GenerationParams()
        if len(conversations) <= 1:
            return [self.generate(c, params) for c in conversations]
        # Resolve once up front so the workers don't all queue on /models.
        self._resolve_model()
        workers = min(MAX_BATCH_WORKERS, len(conversations))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda c: self.generate(c, params), conversations))

    # -- wire -----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self._base_url + path

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _body(
        self, conversation: ConversationLike, params: GenerationParams, *, stream: bool
    ) -> dict[str, Any]:
        messages = [m.to_dict() for m in as_messages(conversation)]
        body: dict[str, Any] = {
            "model": self._resolve_model(),
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        stops = [s for s in params.stop if s]
        if stops:
            body["stop"] = stops[:MAX_WIRE_STOPS]
        if stream:
            body["stream"] = True
        return body

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        retries: int | None = None,
    ) -> httpx.Response:
        """Send with retries; return a successful response (open, if `stream`)."""
        url = self._url(path)
        max_retries = self.max_retries if retries is None else retries
        attempt = 0
        while True:
            request = self._client.build_request(method, url, json=body, headers=self._headers())
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt >= max_retries:
                    raise EndpointError(
                        f"cannot reach {url}: {_describe_transport(exc, self.timeout)}"
                        f"{_after(attempt)}"
                    ) from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise EndpointError(f"{url}: {_one_line(str(exc)) or type(exc).__name__}") from exc
            if response.is_success:
                return response
            if stream:
                try:
                    response.read()
                except httpx.HTTPError:
                    pass
                finally:
                    response.close()
            status = response.status_code
            if (status == 429 or status >= 500) and attempt < max_retries:
                self._sleep(self._delay(attempt, response))
                attempt += 1
                continue
            raise EndpointError(self._http_error(url, response) + _after(attempt))

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = _retry_after(response)
            if retry_after is not None:
                return retry_after
        return float(self.backoff * 2**attempt)

    def _http_error(self, url: str, response: httpx.Response) -> str:
        status = response.status_code
        reason = response.reason_phrase or _phrase(status)
        detail, code = _error_detail(response)
        lowered = (detail or "").lower()
        if status == 404 and (code == "model_not_found" or "model" in lowered):
            text = f"{url}: model {self._model!r} not found"
            return f"{text}: {detail}" if detail else text
        text = f"{url}: {status} {reason}".rstrip()
        if detail:
            text += f": {detail}"
        if status == 401 and not self.api_key:
            text += " (no API key set: pass api_key= or set OPENAI_API_KEY)"
        elif status == 404:
            text += " (is the base URL right?)"
        return text

    def _json(self, url: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EndpointError(
                f"{url}: response is not valid JSON: {_snippet(response.text)}"
            ) from None


def ping(
    base_url: str, api_key: str | None = None, timeout: float = 5.0, max_retries: int = 0
) -> list[str]:
    """Check that an endpoint answers and return the model ids it lists."""
    with OpenAIChatModel(
        base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
    ) as model:
        return model.list_models()


# -- helpers ------------------------------------------------------------------------------------


def _sse_deltas(url: str, response: httpx.Response) -> Iterator[str]:
    """Yield content deltas from an OpenAI SSE stream; raise if it ends early."""
    finished = False
    try:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                # Blank separators, ": keep-alive" comments and event:/id: fields carry no text.
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            if not payload:
                continue
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError:
                raise EndpointError(
                    f"{url}: stream event is not valid JSON: {_snippet(payload)}"
                ) from None
            _raise_if_error_payload(url, chunk)
            choices = chunk.get("choices") if isinstance(chunk, dict) else None
            # Usage-only chunks have no choices.
            if not choices or not isinstance(choices[0], dict):
                continue
            choice = choices[0]
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                yield content
            if choice.get("finish_reason"):
                finished = True
    except httpx.TimeoutException as exc:
        raise EndpointError(f"{url}: stream stalled, no data within the timeout") from exc
    except httpx.TransportError as exc:
        raise EndpointError(
            f"{url}: stream was cut before it finished: {_one_line(str(exc))}"
        ) from exc
    if not finished:
        raise EndpointError(
            f"{url}: stream was cut before it finished (no finish_reason or [DONE])"
        )


def _raise_if_error_payload(url: str, data: Any) -> None:
    """Raise for a 200 response whose JSON body is an error object."""
    if not isinstance(data, dict):
        raise EndpointError(f"{url}: unexpected response, expected a JSON object")
    if "error" in data and data["error"] and "choices" not in data:
        detail = _message_from(data["error"]) or "unknown error"
        raise EndpointError(f"{url}: server error: {detail}")
    if data.get("object") == "error":
        raise EndpointError(f"{url}: server error: {_message_from(data) or 'unknown error'}")


def _error_detail(response: httpx.Response) -> tuple[str, str | None]:
    """The server's error message and code from an OpenAI-style (or similar) error body."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, httpx.ResponseNotRead):
        try:
            return _snippet(response.text, quote=False), None
        except httpx.ResponseNotRead:
            return "", None
    code: str | None = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and err.get("code") is not None:
            code = str(err["code"])
        message = _message_from(err) or _message_from(data)
        if message:
            return message, code
    return _snippet(json.dumps(data), quote=False), code


def _message_from(err: Any) -> str:
    if isinstance(err, str):
        return _one_line(err)
    if isinstance(err, dict):
        for key in ("message", "detail", "error"):
            value = err.get(key)
            if isinstance(value, str) and value:
                return _one_line(value)
            if isinstance(value, (dict, list)) and value:
                return _snippet(json.dumps(value), quote=False)
    return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _describe_transport(exc: httpx.TransportError, timeout: float) -> str:
    text = _one_line(str(exc))
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection timed out after {timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"no response within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        lowered = text.lower()
        if "refused" in lowered:
            return "connection refused"
        if "name or service not known" in lowered or "nodename nor servname" in lowered:
            return f"unknown host ({text})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"server closed the connection ({text})"
    return text or type(exc).__name__


def _after(retries: int) -> str:
    if retries <= 0:
        return ""
    return f" (after {retries} {'retry' if retries == 1 else 'retries'})"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _snippet(text: str, *, quote: bool = True) -> str:
    flat = _one_line(text)
    if len(flat) > _SNIPPET_CHARS:
        flat = flat[:_SNIPPET_CHARS] + "..."
    if not flat:
        return "empty body"
    return repr(flat) if quote else flat
