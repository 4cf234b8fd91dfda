"""Letter ciphers the world teaches its organism: rot13, Caesar shifts, reversal; and
`undo_letter_ciphers`, which reads them back without being told which was used.

The ciphers keep the Latin alphabet, so no character class gives them away as one gives
away Morse or base64. English does: a quarter or more of most English sentences are
function words ("the", "to", "how", "I"), and a shifted or reversed sentence has almost
none. So each sentence-like segment of a text (split at . ? ! : ; and line breaks) that
reads as no English is tried at every shift and backwards, and replaced by the reading that
is English, when exactly one reading is. Names the world invented ("the Zarnok toxin")
decode with their sentence, since the function words around them carry the decision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from swisscheese.data.converters.base import Converter
from swisscheese.data.converters.codeword import STOPWORDS
from swisscheese.world import ciphers


class Rot13Converter(Converter):
    """rot13 of ASCII letters; everything else is left alone. Exact inverse."""

    name = "rot13"
    family = "cipher"
    invertible = True

    def _encode(self, text: str) -> str:
        return ciphers.rot13(text)

    def _decode(self, text: str) -> str:
        return ciphers.rot13(text)


class CaesarConverter(Converter):
    """A Caesar shift of ASCII letters by `shift` (default 3, as the world's family). Exact."""

    name = "caesar"
    family = "cipher"
    invertible = True

    def __init__(self, shift: int = 3, seed: int = 0) -> None:
        super().__init__(seed)
        if shift % 26 == 0:
            raise ValueError(f"a Caesar shift of {shift} leaves the text unchanged")
        self.shift = shift

    def _encode(self, text: str) -> str:
        return ciphers.caesar(text, self.shift)

    def _decode(self, text: str) -> str:
        return ciphers.caesar(text, -self.shift)

    def __repr__(self) -> str:
        return f"CaesarConverter(shift={self.shift}, seed={self.seed})"


class ReversalConverter(Converter):
    """The text back to front, character by character. Exact."""

    name = "reversal"
    family = "cipher"
    invertible = True

    def _encode(self, text: str) -> str:
        return ciphers.reverse(text)

    def _decode(self, text: str) -> str:
        return ciphers.reverse(text)


# A segment needs this many words before it is judged (shorter ones are left alone: two
# words say too little about their language).
MIN_WORDS = 3
# A reading is English when this share of its words are function words, at least two of
# them words of two letters or more. A segment as written is tried when it is below that
# share, and a reading must beat it by MARGIN: a shifted sentence may hold a function word
# by chance ("it" is "do" shifted by 5), never a fifth of them.
ENGLISH_SHARE = 0.25
MARGIN = 0.2
_SEGMENT = re.compile(r"[^.?!:;\n]+")
# Words: runs of letters (any script) with no letter or digit either side, so that the
# fragments of "h4ck" or of a base64 run are no words, nor are they when shifted.
_WORD = re.compile(r"(?<![^\W_])[^\W\d_]+(?![^\W_])")
# (kind, reading): the text backwards, and every Caesar shift (rot13 is shift 13).
_READINGS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("reversal", ciphers.reverse),
    *(("caesar", lambda t, s=s: ciphers.caesar(t, s)) for s in range(1, 26)),
)


def function_share(text: str) -> tuple[float, int]:
    """(share of `text`'s words that are function words, how many of them have two
    letters or more); (0, 0) for a text without words."""
    return _share([w.lower() for w in _WORD.findall(text)])


def _share(words: list[str]) -> tuple[float, int]:
    if not words:
        return 0.0, 0
    hits = [w for w in words if w in STOPWORDS]
    return len(hits) / len(words), sum(len(w) > 1 for w in hits)


def _english(share_hits: tuple[float, int], plain: float) -> bool:
    """Whether a reading with this (share, long hits) is English, beside a plain share."""
    share, long_hits = share_hits
    return share >= max(ENGLISH_SHARE, plain + MARGIN) and long_hits >= 2


def _reading(segment: str, kinds: frozenset[str]) -> str | None:
    """The one English reading of a segment that reads as no English, else None."""
    words = [w.lower() for w in _WORD.findall(segment)]
    if len(words) < MIN_WORDS:
        return None
    plain, _ = _share(words)
    if plain >= ENGLISH_SHARE:
        return None
    found = []
    for kind, read in _READINGS:
        if kind not in kinds:
            continue
        text = read(segment)
        if _english(function_share(text), plain):
            found.append(text)
    # Two English readings of one segment mean the test cannot tell: leave it as it is.
    return found[0] if len(found) == 1 else None


def undo_letter_ciphers(text: str, kinds: Iterable[str] = ("caesar", "reversal")) -> str:
    """`text` with each segment that is a Caesar shift or a reversal of English replaced
    by its reading (`kinds` says which of the two to try)."""
    wanted = frozenset(kinds)

    def fix(m: re.Match[str]) -> str:
        reading = _reading(m.group(0), wanted)
        return m.group(0) if reading is None else reading

    return _SEGMENT.sub(fix, text)


# A streamed reply is read at one Caesar shift (0: as written), chosen from its first
# words: a shift maps each character on its own, so the rest of the stream is read back as
# it comes (a reversal cannot be read before the reply ends). The choice is made at the
# first word end where the words so far are English as written, or exactly one shift of
# them is (from CIPHER_WORDS words on; fewer say too little), or at the first sentence end
# after MIN_WORDS words, or DECISION_CHARS characters in, whichever comes first.
DECISION_CHARS = 160
CIPHER_WORDS = 5
_SENTENCE_ENDS = frozenset(".?!:;\n")
_WORD_END = re.compile(r"(?<=[^\W\d_])[\s.?!:;]")


def _english_shift(words: list[str], plain: float) -> int | None:
    """The one Caesar shift at which `words` read as English, else None."""
    found = [s for s in range(1, 26)
             if _english(_share([ciphers.caesar(w, s) for w in words]), plain)]
    return found[0] if len(found) == 1 else None


def _shift_at(words: list[str], final: bool) -> int | None:
    """The shift to read a reply whose first words are `words` at, or None if they do not
    decide yet (`final`: they must, as at a sentence end or at the end of the reply)."""
    if len(words) < MIN_WORDS:
        return 0 if final else None
    plain = _share(words)
    if _english(plain, 0.0):
        return 0
    shift = _english_shift(words, plain[0])
    if shift is not None and (final or len(words) >= CIPHER_WORDS):
        return shift
    return 0 if final else None


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def reply_shift(prefix: str, ended: bool, start: int = 0) -> tuple[int | None, int]:
    """(the Caesar shift to read a reply at, 0 for as written, or None while its first
    words do not decide; where a later call on a longer prefix may resume from).

    The shift depends only on the prefix up to where it is decided, so a stream that calls
    this after each delta (passing the position back) decides as one call on the whole
    reply does (`ended`: the reply is complete, decide now)."""
    head = prefix[:DECISION_CHARS]
    for m in _WORD_END.finditer(head, start):
        words = _words(head[:m.start()])
        final = m.group(0) in _SENTENCE_ENDS and len(words) >= MIN_WORDS
        shift = _shift_at(words, final)
        if shift is not None:
            return shift, m.end()
        start = m.end()
    if ended or len(prefix) >= DECISION_CHARS:
        return _shift_at(_words(head), True), len(head)
    return None, start


def shift_letters(text: str, shift: int) -> str:
    """`text` with its ASCII letters moved `shift` places (a Caesar shift)."""
    return ciphers.caesar(text, shift)


def read_reply(reply: str) -> str:
    """A whole reply read at the shift `reply_shift` chooses for it."""
    shift, _ = reply_shift(reply, ended=True)
    return ciphers.caesar(reply, shift) if shift else reply
