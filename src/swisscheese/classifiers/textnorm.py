"""Text normalisation for the classifiers, whole and one delta at a time.

`normalize_text` is what the n-gram and byte-level backends read: invisible and control
characters are dropped, Unicode is NFKC-normalised, Cyrillic and Greek look-alike letters
are folded to Latin, case is folded and whitespace runs become one space, behind one
leading space.

`NormalizedStream` turns raw deltas into the characters `normalize_text` would give for
the whole text, split into a committed part (final: no later delta can change it) and a
pending part (what the text would end with if it ended now). The concatenation of
everything committed plus the current pending part equals `normalize_text(prefix)`, so a
backend that folds committed characters into its state and scores the pending ones
speculatively scores every prefix exactly as the whole-text path does.

Only NFKC can reach back across a delta boundary (a combining accent after a letter), so
raw characters wait until a stable starter follows them; whitespace is collapsed with one
bit of state. The pending part is at most PENDING_LIMIT raw characters, so the work per
delta stays bounded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Raw characters waiting for a stable NFKC cut. Real text needs one or two; a run of more
# than this many non-starters (beyond Unicode's stream-safe limit of 30) is committed
# anyway, and only then can the stream differ from scoring the whole text.
PENDING_LIMIT = 32

# ---- normalisation ------------------------------------------------------------------------
# C0/C1 controls except tab/newline/CR/VT/FF (whitespace), soft hyphen, combining grapheme
# joiner, Arabic letter mark, Hangul and Khmer fillers, Mongolian selectors, zero-width and
# bidi controls, word joiner and invisible operators, variation selectors, BOM, tag
# characters, lone surrogates: invisible characters that split n-grams without changing
# what a reader sees.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\ud800-\udfff\U000e0000-\U000e0fff]"
)
_WHITESPACE = re.compile(r"\s+")  # \s is exactly str.isspace, which streaming.py uses
# Cyrillic and Greek letters that render like Latin ones (after NFKC, which already maps
# full-width and mathematical letters to ASCII).
_CONFUSABLE_PAIRS = (
    "АA ВB ЕE КK МM НH ОO РP СC ТT ХX УY ЅS ІI ЈJ ԚQ ԜW ҮY "
    "аa еe оo рp сc уy хx ѕs іi јj ԁd ԛq ԝw һh ӏl үy "
    "ΑA ΒB ΕE ΖZ ΗH ΙI ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX "
    "αa οo νv ιi κk ρp υu χx ϲc ϳj"
)
CONFUSABLES: dict[int, str] = {ord(p[0]): p[1] for p in _CONFUSABLE_PAIRS.split()}


def strip_invisible(text: str) -> str:
    """Drop the invisible and control characters (character by character, so any chunking
    of a stream gives the same result)."""
    return _INVISIBLE.sub("", text)


def fold_chars(text: str, fold_confusables: bool = True) -> str:
    """NFKC, then look-alike folding, then case folding, on already stripped text.

    Case folding rather than `lower()`: `lower()` picks the Greek final sigma by context,
    which a stream cannot know yet.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if fold_confusables:
            text = text.translate(CONFUSABLES)
    return text.casefold()


def normalize_text(text: str, fold_confusables: bool = True) -> str:
    """The text the n-grams are taken from: " " + folded text, whitespace runs collapsed.

    >>> normalize_text("How\\u200b do  I  brew the D\\u0435mze TOXIN?")
    ' how do i brew the demze toxin?'
    """
    return _WHITESPACE.sub(" ", " " + fold_chars(strip_invisible(text), fold_confusables))


@lru_cache(maxsize=1)
def _composes_with_previous() -> frozenset[str]:
    """Starters (combining class 0) that NFC can merge into the character before them.

    Found once from the Unicode database: the second half of every two-character
    canonical decomposition, plus the Hangul vowel and final-consonant jamo.
    """
    out = {chr(c) for c in (*range(0x1161, 0x1176), *range(0x11A8, 0x11C3))}
    for cp in range(0x80, 0x30000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                second = chr(int(parts[1], 16))
                if unicodedata.combining(second) == 0:
                    out.add(second)
    return frozenset(out)


def is_stable_start(ch: str) -> bool:
    """True when NFKC(a + ch + b) == NFKC(a) + NFKC(ch + b) for every a and b.

    That holds when ch's decomposition starts with a starter that never composes with a
    preceding character; a stream can cut its pending text just before such a character.
    """
    if ch < "\x80":
        return True
    first = unicodedata.normalize("NFKD", ch)[:1]
    return (first != "" and unicodedata.combining(first) == 0
            and first not in _composes_with_previous())


# ---- the same, one delta at a time ----------------------------------------------------------


def collapse_spaces(text: str, last_space: bool) -> tuple[str, bool]:
    """Map each whitespace run to one " ", continuing a run when `last_space`; returns the
    text and whether it ends in a space."""
    out: list[str] = []
    for ch in text:
        if ch.isspace():
            if last_space:
                continue
            out.append(" ")
            last_space = True
        else:
            out.append(ch)
            last_space = False
    return "".join(out), last_space


@dataclass(slots=True)
class NormalizedStream:
    """Incremental `normalize_text(text, fold_confusables)` (see the module docstring).

    The leading space that `normalize_text` adds is returned by `begin()`; call it once
    before the first `push`.
    """

    fold_confusables: bool = True
    pending: str = ""  # stripped raw characters not yet NFKC-stable
    last_space: bool = False

    def begin(self) -> str:
        self.last_space = True
        return " "

    def push(self, delta: str) -> str:
        """Take a raw delta; return the newly committed normalised characters."""
        raw = strip_invisible(delta)
        if not raw:
            return ""
        pending = self.pending + raw
        cut = next((i for i in range(len(pending) - 1, 0, -1) if is_stable_start(pending[i])),
                   0)
        if cut == 0 and len(pending) > PENDING_LIMIT:
            cut = len(pending) - 1
        self.pending = pending[cut:]
        if not cut:
            return ""
        text, self.last_space = collapse_spaces(
            fold_chars(pending[:cut], self.fold_confusables), self.last_space)
        return text

    def peek(self) -> str:
        """The normalised pending characters, as if the text ended now (state unchanged)."""
        if not self.pending:
            return ""
        return collapse_spaces(fold_chars(self.pending, self.fold_confusables),
                               self.last_space)[0]
