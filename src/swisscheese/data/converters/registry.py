"""The one converter registry, and stacks of converters applied in order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from swisscheese.data.converters.base import FAMILIES, Converter, NotInvertibleError
from swisscheese.models.base import Message
from swisscheese.registry import Registry


def _check_family(name: str, cls: Any) -> None:
    if cls.family not in FAMILIES:
        raise ValueError(f"converter {name!r}: {cls.__name__}.family {cls.family!r} is not "
                         f"one of {FAMILIES}")


CONVERTERS: Registry[type[Converter]] = Registry(
    "converter", Converter, check=_check_family, entry_point_group="swisscheese.converters")
for _name, _path in (
    ("base64", "b64:Base64Converter"), ("char_spacing", "char_spacing:CharSpacingConverter"),
    ("rot13", "ciphers:Rot13Converter"), ("caesar", "ciphers:CaesarConverter"),
    ("reversal", "ciphers:ReversalConverter"), ("codeword", "codeword:CodewordConverter"),
    ("homoglyphs", "homoglyphs:HomoglyphConverter"),
    ("leetspeak", "leetspeak:LeetspeakConverter"), ("morse", "morse:MorseConverter"),
    ("multiturn_split", "multiturn:MultiturnSplitConverter"),
    ("roleplay", "templates:RoleplayConverter"),
    ("jailbreak_template", "templates:JailbreakTemplateConverter"),
    ("translation", "translation:TranslationConverter"),
    ("zero_width", "zero_width:ZeroWidthConverter"),
):
    CONVERTERS.add_lazy(_name, f"swisscheese.data.converters.{_path}")

register = CONVERTERS.register


def list_converters() -> list[str]:
    """The registered converter names, sorted (imports no converter module)."""
    return CONVERTERS.names()


def get_converter(name: str, **kwargs: object) -> Converter:
    """A new converter by registered name; kwargs go to its constructor."""
    return CONVERTERS.create(name, **kwargs)  # type: ignore[no-any-return]


class ConverterStack(Converter):
    """Several converters applied in order; decoded in reverse order when all are invertible.

    `to_messages` runs every converter but the last through `encode` and lets the last
    shape the conversation, so a stack ending in multiturn_split still splits into turns.
    """

    family = "stack"  # not registered, so it need not be one of FAMILIES

    def __init__(self, converters: Sequence[Converter], seed: int = 0) -> None:
        super().__init__(seed)
        if not converters:
            raise ValueError("a converter stack needs at least one converter")
        self.converters = list(converters)
        self.invertible = all(c.invertible for c in self.converters)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "+".join(c.name for c in self.converters)

    def _encode(self, text: str) -> str:
        for c in self.converters:
            text = c.encode(text)
        return text

    def decode(self, text: str) -> str:
        stuck = [c.name for c in self.converters if not c.invertible]
        if stuck:
            raise NotInvertibleError(f"stack {self.name!r} is not invertible: "
                                     f"{', '.join(stuck)} cannot be decoded")
        for c in reversed(self.converters):
            text = c.decode(text)
        return text

    def to_messages(self, text: str) -> list[Message]:
        for c in self.converters[:-1]:
            text = c.encode(text)
        return self.converters[-1].to_messages(text)

    def __repr__(self) -> str:
        return f"ConverterStack({self.converters!r})"


def stack(names: Iterable[str | Converter], seed: int = 0) -> ConverterStack:
    """A stack, in order, of converters given by name (built with defaults and `seed`)
    or ready-made (to pass other parameters)."""
    convs = [n if isinstance(n, Converter) else get_converter(n, seed=seed) for n in names]
    return ConverterStack(convs, seed=seed)
