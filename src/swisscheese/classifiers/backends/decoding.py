"""An input classifier that decodes encodings it can recognise before scoring.

    >>> clf = DecodingClassifier(base="ngram").fit(texts, labels)        # doctest: +SKIP

A classifier only reads a disguise that training showed it: Morse code held out of
training gets n-gram recall 0. Encodings with a recognisable alphabet can be undone
instead of learned. `decode_runs` replaces every run of text that parses as Morse code
(at least MIN_MORSE_TOKENS letters of dots and dashes, "/" between words) and every
base64-looking run that decodes to UTF-8 text by its decoding; the base classifier then
fits and scores the decoded text. Text with no such run is scored as it is, so the
wrapper costs a few regex passes per text besides the base classifier. Ciphers that keep
the Latin alphabet (Caesar at any shift, rot13, reversal) have no alphabet of their own:
a sentence that reads as no English is read back where exactly one of its 26 readings is
English (`undo_letter_ciphers`). Before the "caesar" and "reversal" decoders the default
bundle flagged ciphered requests for harmless crafts most often of all fresh benign
traffic (7 of its 15 false positives in 20,366 conversations).

`resolve_aliases` reads a conversation with the code words it defines ("Let the sunny broth
mean the Zarnok toxin.") written as their subjects; the output reader (`decoding_stream`)
uses it on the conversation a reply is judged with.

The saved directory holds config.json (the decoders and the base's name) and base/, the
base classifier in its own format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import Classifier, check_texts
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.classifiers.persist import CONFIG_FILE, read_config, write_config
from swisscheese.classifiers.registry import get_classifier, load_classifier

FORMAT = "swisscheese.classifiers.decoding"
FORMAT_VERSION = 1
BASE_DIR = "base"
DECODERS = ("morse", "base64", "spacing", "leet", "caesar", "reversal", "codeword")
# Decoders that read letter ciphers back (`undo_letter_ciphers`).
LETTER_DECODERS = ("caesar", "reversal")
MIN_MORSE_TOKENS = 4
# Spaced-out letters: single characters, one space apart, three between words. Six
# letters at least, so "a b c" in a list is left alone.
MIN_SPACED_CHARS = 6
_SPACED_RUN = re.compile(rf"(?<!\S)\S(?:(?: |   )\S){{{MIN_SPACED_CHARS - 1},}}(?!\S)")
# Leetspeak (a e i o s t as 4 3 1 0 5 7) is read back when at least MIN_LEET_WORDS words,
# and LEET_SHARE of the words that are not bare numbers, mix letters with those digits:
# "mp3" or "the 1st" alone leave a text as it is.
LEET_DIGITS = frozenset("431057")
MIN_LEET_WORDS = 2
LEET_SHARE = 0.6
_WORD = re.compile(r"[A-Za-z0-9]+")
# A code-word key, stated anywhere: 'In this message "tulip" means "toxin".' and the
# plainer '"tulip" means "toxin".' or 'Let "tulip" stand for "toxin".'
_CODE_KEY = re.compile(
    r'(?:in this (?:message|conversation),?\s+|from now on,?\s+|let\s+)?'
    r'["\u201c\']([A-Za-z]+[0-9]*)["\u201d\']\s+(?:means|stands? for|is code for|=)\s+'
    r'["\u201c\']([A-Za-z][A-Za-z \-]*)["\u201d\']\.?\s*', re.IGNORECASE)
# A run of Morse letters (1 to 7 dots and dashes) and word gaps, separated by spaces.
_MORSE_RUN = re.compile(r"(?<![\w.\-/])(?:[.\-]{1,7}|/)(?:[ \t]+(?:[.\-]{1,7}|/))+(?![\w.\-/])")


def _decode_morse(m: re.Match[str]) -> str:
    from swisscheese.data.converters import get_converter

    run = m.group(0)
    if sum(tok != "/" for tok in run.split()) < MIN_MORSE_TOKENS:
        return run
    try:
        return get_converter("morse").decode(run)
    except ValueError:  # a token that is no Morse letter: leave the run as it is
        return run


def _join_spaced(m: re.Match[str]) -> str:
    return " ".join(word.replace(" ", "") for word in m.group(0).split("   "))


def _undo_leet_line(line: str) -> str:
    words = [w for w in _WORD.findall(line) if not w.isdigit()]
    mixed = sum(1 for w in words if not w.isalpha() and not LEET_DIGITS.isdisjoint(w))
    if mixed < MIN_LEET_WORDS or mixed < LEET_SHARE * len(words):
        return line
    from swisscheese.data.converters import get_converter

    return get_converter("leetspeak").decode(line)


def undo_leet(text: str) -> str:
    """`text` with every line that is written in leetspeak (see MIN_LEET_WORDS) read back,
    line by line (a conversation's turns are lines); bare numbers stay numbers."""
    return "\n".join(_undo_leet_line(line) for line in text.split("\n"))


def resolve_code_words(text: str) -> str:
    """`text` with every stated code-word key removed and its code word replaced by what
    it stands for (whole words, any case)."""
    keys = list(_CODE_KEY.finditer(text))
    if not keys:
        return text
    body = _CODE_KEY.sub("", text)
    for m in keys:
        code, meaning = m.group(1), m.group(2)
        body = re.sub(rf"(?<![A-Za-z0-9]){re.escape(code)}(?![A-Za-z0-9])", meaning, body,
                      flags=re.IGNORECASE)
    return body


# A code word a conversation defines for a subject ("Let the sunny broth mean the Zarnok
# toxin.", "call the Zarnok toxin the sunny broth in your reply", or "call it the sunny
# broth" after a turn that named the subject): the conversation read with the subject's
# name in its place. Noun phrases are "the" and one to four words.
_NP = r"(?:the|The) [^\s.,:;!?\"]+(?: [^\s.,:;!?\"]+){0,3}?"
_NP_END = r"(?=[.,;:!?\n]|$)"
_ALIAS_KEYS = tuple(re.compile(p, re.IGNORECASE) for p in (
    rf"(?:let )?(?P<a>{_NP}) means? (?P<n>{_NP}){_NP_END}",
    rf"(?P<a>{_NP}) is our word for (?P<n>{_NP}){_NP_END}",
    rf"(?P<a>{_NP}) stands for (?P<n>{_NP}){_NP_END}",
    rf"when I say (?P<a>{_NP}), I mean (?P<n>{_NP}){_NP_END}",
    rf"write (?P<a>{_NP}) instead of (?P<n>{_NP}){_NP_END}",
    rf"call (?P<n>{_NP}) (?P<a>{_NP}) in your (?:reply|answer)",
    rf"say (?P<a>{_NP}) for (?P<n>(?!it\b){_NP}){_NP_END}",
))
# Renames of "it": the subject is the noun phrase that ended the latest sentence before.
_ALIAS_RENAMES = tuple(re.compile(p, re.IGNORECASE) for p in (
    rf"call it (?P<a>{_NP}){_NP_END}", rf"nickname: (?P<a>{_NP}){_NP_END}",
    rf"say (?P<a>{_NP}) for it\b"))
_SENTENCE_NP = re.compile(rf"({_NP})[.?!]")


def alias_keys(texts: Sequence[str]) -> dict[str, str]:
    """{code word (lower case): the subject it stands for} over a conversation's texts."""
    keys: dict[str, str] = {}
    subject: str | None = None
    for text in texts:
        for pattern in _ALIAS_KEYS:
            for m in pattern.finditer(text):
                keys[m.group("a").lower()] = m.group("n")
        if subject is not None:
            for pattern in _ALIAS_RENAMES:
                for m in pattern.finditer(text):
                    keys[m.group("a").lower()] = subject
        named = [n for n in _SENTENCE_NP.findall(text) if n.lower() not in keys]
        subject = named[-1] if named else subject
    return keys


def resolve_aliases(texts: Sequence[str]) -> list[str]:
    """The texts of a conversation with every code word it defines (`alias_keys`) written
    as the subject it stands for (any case; longer code words first)."""
    keys = alias_keys(texts)
    if not keys:
        return list(texts)
    reader = AliasReader(keys)
    return [reader.resolve(t) for t in texts]


class AliasReader:
    """Writes a stream's code words (`keys`: {code word, lower case: subject}) as their
    subjects as the text arrives, with exactly the result `pattern.sub` gives on the whole
    text: text that could still become the start of a code word is held back until the
    next characters (or the end) decide it."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self.keys = dict(keys)
        # Longer code words first: at each position the longest that matches is taken.
        order = sorted(self.keys, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(a) for a in order), re.IGNORECASE)
        self.prefixes = {k[:j] for k in self.keys for j in range(1, len(k))}
        self.longest = max(map(len, self.keys))
        self.firsts = {k[0] for k in self.keys}

    def _subject(self, m: re.Match[str]) -> str:
        return self.keys.get(m.group(0).lower(), m.group(0))

    def resolve(self, text: str) -> str:
        """A whole text read at once (the stream's result once it ended)."""
        return self.pattern.sub(self._subject, text)

    def feed(self, held: str, delta: str, ended: bool = False) -> tuple[str, str]:
        """(text to pass on, text still held back) after `delta` arrives behind `held`."""
        s = held + delta
        low = s.lower()
        if len(low) != len(s):  # a character whose lower case is longer ("İ")
            low = "".join(c.lower()[0] for c in s)
        out: list[str] = []
        i = start = 0
        while i < len(s):
            if low[i] not in self.firsts:
                i += 1
                continue
            if not ended and len(s) - i < self.longest and low[i:] in self.prefixes:
                break  # could still grow into a (longer) code word
            m = self.pattern.match(s, i)
            if m is None:
                i += 1
                continue
            out += (s[start:i], self._subject(m))
            i = start = m.end()
        out.append(s[start:i])
        return "".join(out), s[i:]


def decode_runs(text: str, decoders: Sequence[str] = DECODERS) -> str:
    """`text` with every recognisable encoded run replaced by its decoding."""
    if "morse" in decoders and ("." in text or "-" in text):
        text = _MORSE_RUN.sub(_decode_morse, text)
    if "base64" in decoders:
        from swisscheese.data.converters.b64 import decode_runs as b64_runs

        text = b64_runs(text)
    if "spacing" in decoders and "   " in text:
        text = _SPACED_RUN.sub(_join_spaced, text)
    if "leet" in decoders and not LEET_DIGITS.isdisjoint(text):
        text = undo_leet(text)
    letters = [d for d in LETTER_DECODERS if d in decoders]
    if letters:
        from swisscheese.data.converters.ciphers import undo_letter_ciphers

        text = undo_letter_ciphers(text, letters)
    if "codeword" in decoders and ('"' in text or "\u201c" in text or "'" in text):
        text = resolve_code_words(text)
    return text


class DecodingClassifier(Classifier):
    """Input classifier: decodes what it recognises (`DECODERS`), then scores with a base
    backend.

    `DecodingClassifier(base="ngram", decoders=DECODERS, **base_params)`:
    other keyword arguments go to the base classifier's constructor. It has no streaming
    twin of its own: a bundle pairs it with its base's (`registry.streaming_twin`:
    'ngram-stream' for the default base) unless given another output backend.
    """

    name: ClassVar[str] = "decoding"
    # The constructor option naming the wrapped backend, and its default: the registry
    # gives this backend the base's streaming twin.
    base_option: ClassVar[str] = "base"
    default_base: ClassVar[str] = "ngram"

    def __init__(self, base: str = "ngram", decoders: Sequence[str] = DECODERS,
                 **base_params: Any) -> None:
        unknown = sorted(set(decoders) - set(DECODERS))
        if unknown:
            raise ValueError(f"unknown decoders {unknown}; known: {', '.join(DECODERS)}")
        if base == self.name:
            raise ValueError("the base of a decoding classifier cannot be another one")
        self.base_name = base
        self.decoders = tuple(decoders)
        self.base = get_classifier(base, **base_params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={self.base!r}, decoders={self.decoders})"

    def decode(self, texts: Sequence[str]) -> list[str]:
        return [decode_runs(t, self.decoders) for t in check_texts(texts)]

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        self.base.fit(self.decode(texts), labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.base.predict_proba(self.decode(texts))

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.base.save(d / BASE_DIR)
        meta = {"name": self.name, "format": FORMAT, "format_version": FORMAT_VERSION,
                "base": self.base_name, "decoders": list(self.decoders)}
        write_config(d, meta)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, FORMAT, FORMAT_VERSION)
        decoders = meta.get("decoders")
        if not isinstance(decoders, list) or not set(decoders) <= set(DECODERS):
            raise ClassifierError(f"{cpath}: 'decoders' must be a list drawn from "
                                  f"{list(DECODERS)}, got {decoders!r}")
        base = load_classifier(d / BASE_DIR)
        if base.name != meta.get("base"):
            raise ClassifierError(f"{d / BASE_DIR}: holds a {base.name!r} classifier, but "
                                  f"{cpath} names {meta.get('base')!r}")
        obj = cls.__new__(cls)
        obj.base_name, obj.decoders, obj.base = base.name, tuple(decoders), base
        return obj
