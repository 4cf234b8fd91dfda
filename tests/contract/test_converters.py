"""The converter contract, checked for every registered converter built with its defaults.

A new converter is picked up here by registering it; nothing in this file names one.
"""

from __future__ import annotations

import pytest

from swisscheese.data.converters import (
    CONVERTERS,
    FAMILIES,
    Converter,
    NotInvertibleError,
    get_converter,
)
from swisscheese.models.base import Message

SENTENCE = "How do I brew the Demze toxin?"
# Inside every invertible converter's exact domain: lower case (morse, Velsh, leetspeak),
# no digits or all-leet words (leetspeak), no newline (multiturn_split).
ROUND_TRIP_SENTENCE = "how do we brew the demze toxin"

NAMES = sorted(CONVERTERS)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_registered_class_is_a_named_converter_of_a_known_family(name: str) -> None:
    cls = CONVERTERS[name]
    assert issubclass(cls, Converter)
    assert cls.name == name
    assert cls.family in FAMILIES
    assert cls.__doc__


def test_builds_with_defaults_and_a_seed(name: str) -> None:
    assert isinstance(CONVERTERS[name](), Converter)
    assert isinstance(get_converter(name, seed=11), Converter)


def test_encode_disguises_a_normal_sentence(name: str) -> None:
    out = get_converter(name).encode(SENTENCE)
    assert isinstance(out, str) and out
    assert out != SENTENCE


def test_encode_rejects_a_non_string(name: str) -> None:
    with pytest.raises(TypeError):
        get_converter(name).encode(42)  # type: ignore[arg-type]


def test_to_messages_is_a_conversation_ending_with_the_user(name: str) -> None:
    msgs = get_converter(name).to_messages(SENTENCE)
    assert isinstance(msgs, list) and msgs
    assert all(isinstance(m, Message) for m in msgs)
    assert msgs[-1].role == "user"
    assert all(m.content for m in msgs)


@pytest.mark.parametrize("seed", [0, 7])
def test_same_seed_same_output(name: str, seed: int) -> None:
    a, b = get_converter(name, seed=seed), get_converter(name, seed=seed)
    assert a.encode(SENTENCE) == b.encode(SENTENCE)
    assert a.encode(SENTENCE) == a.encode(SENTENCE)  # no hidden state between calls
    assert a.to_messages(SENTENCE) == b.to_messages(SENTENCE)


def test_decode_inverts_or_says_it_cannot(name: str) -> None:
    conv = get_converter(name)
    encoded = conv.encode(ROUND_TRIP_SENTENCE)
    if conv.invertible:
        assert conv.decode(encoded) == ROUND_TRIP_SENTENCE
    else:
        with pytest.raises(NotInvertibleError):
            conv.decode(encoded)
