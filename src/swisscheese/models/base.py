"""The chat-model contract every backend implements.

A backend turns a conversation (a list of messages) into a reply, either whole
(`generate`), as text deltas (`stream`), or for many conversations at once
(`generate_batch`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ROLES = ("system", "user", "assistant")


class ModelError(RuntimeError):
    """Any failure of a model backend; the message says what to fix."""


class ModelLoadError(ModelError):
    """A model could not be loaded: missing directory, not a causal LM, corrupt weights."""


class EndpointError(ModelError):
    """An OpenAI-compatible endpoint could not be reached or answered with an error."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


MessageLike = Message | Mapping[str, Any]
ConversationLike = Sequence[MessageLike] | str


def as_messages(conversation: ConversationLike) -> list[Message]:
    """Normalise a string, a list of dicts or a list of Messages into Messages."""
    if isinstance(conversation, str):
        return [Message("user", conversation)]
    out: list[Message] = []
    for i, m in enumerate(conversation):
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must have 'role' and 'content', got {m!r}")
        out.append(Message(str(m["role"]), str(m["content"])))
    if not out:
        raise ValueError("a conversation needs at least one message")
    return out


@dataclass
class GenerationParams:
    """Sampling settings shared by all backends. temperature 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@runtime_checkable
class ChatModel(Protocol):
    """What the guard, the red team and the evaluations call."""

    name: str

    def generate(
        self, conversation: ConversationLike, params: GenerationParams | None = None
    ) -> Message: ...

    def stream(
        self, conversation: ConversationLike, params: GenerationParams | None = None
    ) -> Iterator[str]: ...

    def generate_batch(
        self, conversations: Sequence[ConversationLike], params: GenerationParams | None = None
    ) -> list[Message]: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; say whether one was found."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut], cut < len(text)



def stop_filtered(deltas: Iterator[str], stop: Sequence[str]) -> Iterator[str]:
    """Pass deltas through, ending at the first stop string even when it spans deltas.

    Text that might be the start of a stop string is held back until it is clear,
    so a streamed reply never shows what a whole reply would have cut.
    """
    stops = [s for s in stop if s]
    if not stops:
        yield from deltas
        return
    pending = ""
    for delta in deltas:
        pending += delta
        kept, found = cut_at_stop(pending, stops)
        if found:
            if kept:
                yield kept
            return
        hold = _partial_stop_len(pending, stops)
        if len(pending) > hold:
            yield pending[: len(pending) - hold]
            pending = pending[len(pending) - hold:]
    if pending:
        yield pending


def _partial_stop_len(text: str, stops: Sequence[str]) -> int:
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
