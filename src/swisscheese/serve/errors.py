"""OpenAI-style error objects: `{"error": {"message", "type", "param", "code"}}`.

Every failure a client sees goes through `APIError`, with a status code and a message
that says what to fix. Unexpected exceptions become a 500 naming the request id, never a
stack trace (the trace goes to the gateway's log).
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error answered to the client as an OpenAI-style error object."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",  # noqa: A002
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None,  # noqa: A002
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param, code)


def upstream_error(message: str) -> APIError:
    return APIError(502, f"the model backend failed: {message}", "upstream_error",
                    code="upstream_unavailable")
