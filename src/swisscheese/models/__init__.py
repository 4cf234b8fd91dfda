"""Chat models: one protocol (`ChatModel`), and the backends that load a model spec.

`load_model(spec)` picks the backend from the spec through the `MODEL_BACKENDS` registry:
an `http(s)://` URL is an OpenAI-compatible server (append `#model-id` to choose a model
on a server that serves several), anything else a local HF directory.
"""

from __future__ import annotations

from swisscheese.models.backends import MODEL_BACKENDS, ModelBackend, backend_for, load_model
from swisscheese.models.base import (
    ChatModel,
    EndpointError,
    GenerationParams,
    Message,
    ModelError,
    ModelLoadError,
    as_messages,
)

__all__ = ["ChatModel", "EndpointError", "GenerationParams", "Message", "ModelBackend",
           "ModelError", "ModelLoadError", "MODEL_BACKENDS", "as_messages", "backend_for",
           "load_model"]
