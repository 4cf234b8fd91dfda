"""The converter contract: a request in, a disguised request out, and back where possible.

A converter widens classifier training data and serves the red team as an attack.
Subclasses implement the protected hooks `_encode` and, when invertible, `_decode`;
the public methods check their input and say clearly what cannot be done.
"""

from __future__ import annotations

import random
from typing import ClassVar

from swisscheese.models.base import Message

# The augmentation families; classifier recall is reported per family, held-out ones included.
FAMILIES = ("cipher", "encoding", "obfuscation", "template", "substitution", "multiturn",
            "translation")


class NotInvertibleError(Exception):
    """`decode` was called on a converter that has no inverse."""


class Converter:
    """Turns a request into a disguised form; `decode` undoes it when `invertible`.

    `seed` fixes every random choice. Randomness is drawn from a generator seeded by
    (seed, text), so `encode` is a pure function: the same instance, or two instances
    with the same seed, always give the same output for the same text.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    invertible: bool = False  # an instance may refine it (see TranslationConverter)

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def encode(self, text: str) -> str:
        """The disguised form of `text`."""
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: encode takes a str, got {type(text).__name__}")
        return self._encode(text)

    def decode(self, text: str) -> str:
        """The request `text` was made from; raises NotInvertibleError when there is no inverse."""
        if not self.invertible:
            raise NotInvertibleError(
                f"converter {self.name!r} ({self.family}) is not invertible: "
                "its output cannot be turned back into the request"
            )
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: decode takes a str, got {type(text).__name__}")
        return self._decode(text)

    def to_messages(self, text: str) -> list[Message]:
        """The disguised request as a conversation; one user message unless overridden."""
        return [Message("user", self.encode(text))]

    def _encode(self, text: str) -> str:
        raise NotImplementedError

    def _decode(self, text: str) -> str:
        raise NotInvertibleError(f"converter {self.name!r} has no decoder")

    def _rng(self, text: str) -> random.Random:
        # A str seed is hashed with SHA-512, so this is stable across processes.
        return random.Random(f"{self.name}:{self.seed}:{text}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"
