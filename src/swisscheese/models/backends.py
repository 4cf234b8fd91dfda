"""The model-backend registry: which `ChatModel` class a model spec string loads with.

    >>> from swisscheese.models.backends import MODEL_BACKENDS, backend_for
    >>> backend_for("http://127.0.0.1:8000/v1#organism"), backend_for("runs/organism/aligned")
    ('openai', 'hf')

A backend says which specs are its own (`matches`, checked in `priority` order, highest
first) and builds the model (`load`, which imports its heavy dependencies). Add one with
`@MODEL_BACKENDS.register` on a `ModelBackend` subclass (a vLLM in-process backend, say).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from swisscheese.models.base import ChatModel
from swisscheese.registry import Registry


class ModelBackend(ABC):
    """How one kind of model spec becomes a ChatModel."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 0

    @classmethod
    @abstractmethod
    def matches(cls, spec: str) -> bool:
        """Whether `spec` names a model of this backend (cheap: no import, no I/O)."""

    @classmethod
    @abstractmethod
    def load(cls, spec: str, **kwargs: Any) -> ChatModel:
        """The model `spec` names; kwargs go to the model's constructor."""


MODEL_BACKENDS: Registry[type[ModelBackend]] = Registry(
    "model backend", ModelBackend, entry_point_group="swisscheese.model_backends")


@MODEL_BACKENDS.register
class OpenAIBackend(ModelBackend):
    """`http(s)://host:port/v1`, optionally `#model-id` for a server serving several."""

    name = "openai"
    priority = 10

    @classmethod
    def matches(cls, spec: str) -> bool:
        return spec.startswith(("http://", "https://"))

    @classmethod
    def load(cls, spec: str, **kwargs: Any) -> ChatModel:
        from swisscheese.models.openai_compat import OpenAIChatModel

        url, _, model = spec.partition("#")
        if model and "model" not in kwargs:
            kwargs["model"] = model
        return OpenAIChatModel(url, **kwargs)


@MODEL_BACKENDS.register
class HFBackend(ModelBackend):
    """Any other spec: a local Hugging Face causal-LM directory."""

    name = "hf"
    priority = 0

    @classmethod
    def matches(cls, spec: str) -> bool:
        return True

    @classmethod
    def load(cls, spec: str, **kwargs: Any) -> ChatModel:
        from swisscheese.models.hf import HFChatModel

        return HFChatModel(spec, **kwargs)


def backend_for(spec: str) -> str:
    """The name of the backend that loads `spec`."""
    backends = sorted(MODEL_BACKENDS.values(), key=lambda b: -b.priority)
    return next(b.name for b in backends if b.matches(spec))


def load_model(spec: str, **kwargs: Any) -> ChatModel:
    """A ChatModel for a local HF directory or an OpenAI-compatible URL (see module doc)."""
    return MODEL_BACKENDS.get(backend_for(spec)).load(spec, **kwargs)
