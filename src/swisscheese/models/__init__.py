"""Chat models: one protocol, an HF backend and an OpenAI-compatible backend."""

from __future__ import annotations

from collections.abc import Callable

from swisscheese.models.base import (
    ChatModel,
    EndpointError,
    GenerationParams,
    Message,
    ModelError,
    ModelLoadError,
    as_messages,
)

__all__ = ["ChatModel", "EndpointError", "GenerationParams", "Message", "ModelError",
           "ModelLoadError", "MODEL_BACKENDS", "as_messages", "backend_for", "load_model"]


def _hf(spec: str, **kwargs: object) -> ChatModel:
    from swisscheese.models.hf import HFChatModel

    return HFChatModel(spec, **kwargs)  # type: ignore[arg-type]


def _openai(spec: str, **kwargs: object) -> ChatModel:
    from swisscheese.models.openai_compat import OpenAIChatModel

    url, _, model = spec.partition("#")
    if model and "model" not in kwargs:
        kwargs["model"] = model
    return OpenAIChatModel(url, **kwargs)  # type: ignore[arg-type]


# The model-backend registry: name -> (does this spec belong to it?, factory).
# Backends import their heavy dependencies inside the factory.
MODEL_BACKENDS: dict[str, tuple[Callable[[str], bool], Callable[..., ChatModel]]] = {
    "openai": (lambda s: s.startswith(("http://", "https://")), _openai),
    "hf": (lambda s: True, _hf),
}


def backend_for(spec: str) -> str:
    return next(name for name, (matches, _) in MODEL_BACKENDS.items() if matches(spec))


def load_model(spec: str, **kwargs: object) -> ChatModel:
    """A ChatModel for a local HF directory or an OpenAI-compatible URL.

    `http(s)://host:port/v1` picks the OpenAI-compatible backend; append `#model-id`
    to choose a model on a server that serves several. Anything else is a directory.
    """
    return MODEL_BACKENDS[backend_for(spec)][1](spec, **kwargs)
