"""Base64 of the UTF-8 bytes, the encoding a model reads only if it learned to."""

from __future__ import annotations

import base64
import binascii

from swisscheese.data.converters.base import Converter
from swisscheese.world import ciphers


class Base64Converter(Converter):
    """Base64 of the whole text. Exact inverse.

    `decode` reads a whole base64 string strictly; for text that is not one (a reply
    that quotes base64 inside prose) it falls back to decoding every base64 run in it.
    """

    name = "base64"
    family = "encoding"
    invertible = True

    def _encode(self, text: str) -> str:
        return ciphers.b64encode(text)

    def _decode(self, text: str) -> str:
        s = text.strip()
        try:
            return base64.b64decode(s + "=" * (-len(s) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return ciphers.b64decode_runs(text)


def decode_runs(text: str) -> str:
    """Every base64-looking run of `text` decoded (where it decodes to UTF-8), the rest as
    it is: for readers of mixed text, such as the decoding classifier."""
    return ciphers.b64decode_runs(text)
