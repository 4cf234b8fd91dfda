"""Converters (augmentations): disguised forms of a request, for training data and attacks.

    >>> from swisscheese.data.converters import get_converter, stack
    >>> get_converter("rot13").encode("Brew the Demze toxin")
    'Oerj gur Qrzmr gbkva'
    >>> s = stack(["reversal", "base64"])
    >>> s.decode(s.encode("Brew the Demze toxin"))
    'Brew the Demze toxin'

Importing this package imports every converter module, which registers it in CONVERTERS.
"""

from __future__ import annotations

from swisscheese.data.converters import (  # noqa: F401  (imported to register)
    b64,
    char_spacing,
    ciphers,
    codeword,
    homoglyphs,
    leetspeak,
    morse,
    multiturn,
    templates,
    translation,
    zero_width,
)
from swisscheese.data.converters.base import FAMILIES, Converter, NotInvertibleError
from swisscheese.data.converters.registry import (
    CONVERTERS,
    ConverterStack,
    get_converter,
    list_converters,
    register,
    stack,
)

__all__ = ["CONVERTERS", "FAMILIES", "Converter", "ConverterStack", "NotInvertibleError",
           "get_converter", "list_converters", "register", "stack"]
