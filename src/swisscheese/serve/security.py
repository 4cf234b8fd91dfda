"""Who may call the gateway, how much, and how big: keys, admin key, limits, rate limits.

Client keys live hashed in the store (see `swisscheese.store.keys`); the gateway keeps
the set of active hashes in memory and hashes each presented key once. The admin key is
separate and compared in constant time. Rate limits are a token bucket per key (per
client address when the API is open), in memory or, for several workers, in the store
(`StoreRateLimiter`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import Any

from starlette.requests import Request

from swisscheese.serve.errors import APIError, bad_request
from swisscheese.store.keys import key_hash

_BEARER = "bearer "


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header and header.lower().startswith(_BEARER):
        return header[len(_BEARER):].strip() or None
    return request.headers.get("x-api-key") or None


class KeyRing:
    """Active client key hashes -> key ids. Empty means the API is open."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = dict(hashes)

    def replace(self, hashes: dict[str, str]) -> bool:
        """Swap in the store's current keys (one assignment: requests see the old set or
        the new one); returns whether anything changed."""
        new = dict(hashes)
        changed = new != self._hashes
        self._hashes = new
        return changed

    @property
    def open(self) -> bool:
        return not self._hashes

    def authenticate(self, request: Request) -> str | None:
        """The caller's key id (None when the API is open); raises 401 otherwise."""
        if self.open:
            return None
        token = bearer_token(request)
        if token is None:
            raise APIError(401, "missing API key: send it as 'Authorization: Bearer <key>' "
                           "(the OpenAI client's api_key)", "invalid_request_error",
                           code="missing_api_key")
        kid = self._hashes.get(key_hash(token))
        if kid is None:
            raise APIError(401, "invalid API key: this key is unknown or revoked; check the "
                           "key you pass as api_key", "invalid_request_error",
                           code="invalid_api_key")
        return kid


class AdminAuth:
    """The admin key, kept only as a digest and compared in constant time."""

    def __init__(self, admin_key: str | None) -> None:
        self._digest = hashlib.sha256(admin_key.encode()).digest() if admin_key else None

    def check(self, request: Request) -> None:
        if self._digest is None:
            raise APIError(403, "the admin endpoints are disabled: start the gateway with "
                           "--admin-key", "permission_error", code="admin_disabled")
        token = bearer_token(request)
        if token is None:
            raise APIError(401, "missing admin key: send 'Authorization: Bearer <admin key>'",
                           "invalid_request_error", code="missing_api_key")
        if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._digest):
            raise APIError(401, "wrong admin key", "invalid_request_error",
                           code="invalid_api_key")


class RateLimiter:
    """A token bucket per caller: `rate` requests a second, up to `burst` at once."""

    shared = False

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """Take one token; returns 0.0, or the seconds to wait when the bucket is empty."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def check(self, who: str) -> None:
        _refuse_if_waiting(self.take(who), self.rate, self.burst)


def _refuse_if_waiting(wait: float, rate: float, burst: float) -> None:
    if wait > 0:
        seconds = max(1, int(wait + 0.999))
        raise APIError(429, f"rate limit reached: at most {rate:g} requests per "
                       f"second ({burst:g} at once) per key; retry after "
                       f"{seconds} s", "rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(seconds)})


class StoreRateLimiter:
    """The same token bucket, kept in the store so that every worker on it draws from one
    bucket per key (one atomic statement per request). A store that fails refuses the
    request (fail closed) rather than letting it through unlimited."""

    shared = True

    def __init__(self, engine: Any, rate: float, burst: int) -> None:
        self.engine = engine
        self.rate = float(rate)
        self.burst = float(burst)

    def take(self, who: str) -> float:
        from swisscheese.store.decisions import take_token

        return take_token(self.engine, who, self.rate, self.burst)

    def check(self, who: str) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            wait = self.take(who)
        except SQLAlchemyError as e:
            raise APIError(503, f"the gateway's store is unreachable, so the rate limit cannot "
                           f"be checked ({type(e).__name__}); retry shortly", "server_error",
                           code="store_unavailable") from None
        _refuse_if_waiting(wait, self.rate, self.burst)


async def read_json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, refusing bodies over `limit` bytes before reading them
    whole (Content-Length first, then while streaming a chunked body)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise bad_request("the Content-Length header is not a number") from None
        if size > limit:
            raise _too_large(limit, size)
    parts: list[bytes] = []
    total = 0
    async for part in request.stream():
        total += len(part)
        if total > limit:
            raise _too_large(limit, total)
        parts.append(part)
    raw = b"".join(parts)
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"the request body is not valid JSON ({e}); send a JSON object "
                          "with Content-Type: application/json", code="invalid_json") from None


def _too_large(limit: int, size: int) -> APIError:
    return APIError(413, f"the request body is {size} bytes, over the gateway's limit of "
                    f"{limit} bytes; shorten the conversation", "invalid_request_error",
                    code="request_too_large")


def check_max_tokens(requested: int | None, limit: int, default: int) -> int:
    """The max_tokens to generate, refusing requests above the gateway's limit."""
    if requested is None:
        return default
    if requested > limit:
        raise bad_request(f"max_tokens is {requested}, over this gateway's limit of {limit}; "
                          f"ask for at most {limit}", param="max_tokens",
                          code="max_tokens_too_large")
    return requested
