"""Chat models: one protocol, an HF backend and an OpenAI-compatible backend."""

from __future__ import annotations

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
           "ModelLoadError", "as_messages", "load_model"]


def load_model(spec: str, **kwargs: object) -> ChatModel:
    """A ChatModel for a local HF directory or an OpenAI-compatible URL.

    `http(s)://host:port/v1` picks the OpenAI-compatible backend; append `#model-id`
    to choose a model on a server that serves several. Anything else is a directory.
    """
    if spec.startswith(("http://", "https://")):
        from swisscheese.models.openai_compat import OpenAIChatModel

        url, _, model = spec.partition("#")
        if model and "model" not in kwargs:
            kwargs["model"] = model
        return OpenAIChatModel(url, **kwargs)  # type: ignore[arg-type]
    from swisscheese.models.hf import HFChatModel

    return HFChatModel(spec, **kwargs)  # type: ignore[arg-type]
