"""Converters (augmentations): disguised forms of a request, for training data and attacks.

    >>> from swisscheese.data.converters import get_converter, stack
    >>> get_converter("rot13").encode("Brew the Demze toxin")
    'Oerj gur Qrzmr gbkva'
    >>> s = stack(["reversal", "base64"])
    >>> s.decode(s.encode("Brew the Demze toxin"))
    'Brew the Demze toxin'

The registry names every converter lazily: a converter's module is imported the first time
it is built.
"""

from __future__ import annotations

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
