"""The OpenAI wire format the gateway speaks: requests, replies and stream chunks.

Requests ignore fields the gateway does not use (tools, logprobs, user, ...) so that any
OpenAI client works, but reject the ones whose meaning it cannot honour (n > 1). Replies
carry one extra top-level field, `swisscheese`, with the guard's decision; OpenAI clients
keep unknown fields as extras.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def to_message(self) -> dict[str, str]:
        # "developer" is the newer OpenAI name for the system role.
        return {"role": "system" if self.role == "developer" else self.role,
                "content": self.text()}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    stream_options: StreamOptions | None = None

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @field_validator("messages")
    @classmethod
    def _last_is_not_empty(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.text().strip() for m in messages):
            raise ValueError("the conversation has no text; send at least one message with "
                             "non-empty content")
        return messages

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str]
    model: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def now_s() -> int:
    return int(time.time())


def chunk(cid: str, model: str, created: int, delta: dict[str, str],
          finish_reason: str | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk` event."""
    out: dict[str, Any] = {
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}],
    }
    if extra is not None:
        out["swisscheese"] = extra
    return out


def usage(model: Any, conversation: list[dict[str, str]], completion_text: str,
          n_deltas: int) -> dict[str, int]:
    """OpenAI's `usage` object. A model with a tokenizer counts its own tokens
    (`token_usage(conversation, completion) -> (prompt, completion)`, as the HF backend
    does); for one without (an upstream), the prompt is estimated at four characters a
    token, OpenAI's rule of thumb, and each streamed delta counts as one token."""
    counter = getattr(model, "token_usage", None)
    if callable(counter):
        prompt, completion = counter(conversation, completion_text)
    else:
        chars = sum(len(m.get("content") or "") for m in conversation)
        prompt, completion = (chars + 3) // 4, n_deltas
    return {"prompt_tokens": int(prompt), "completion_tokens": int(completion),
            "total_tokens": int(prompt) + int(completion)}


def usage_chunk(cid: str, model: str, created: int, use: dict[str, int]) -> dict[str, Any]:
    """The last chunk of a stream whose client asked for `include_usage`: no choices."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": use}


def completion(cid: str, model: str, created: int, content: str, finish_reason: str,
               extra: dict[str, Any], usage: dict[str, int] | None = None) -> dict[str, Any]:
    """A whole `chat.completion`."""
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
        "swisscheese": extra,
    }


def model_list(ids: list[str], created: int) -> dict[str, Any]:
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": created, "owned_by": "swisscheese"}
                     for i in ids]}
