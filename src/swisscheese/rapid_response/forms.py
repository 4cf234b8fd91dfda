"""The form of a reported attack: the converter stack, prefix and template that turn a
request into it, found by decoding the report with every invertible converter and stack of
two and keeping the reading that is the language of the bundle's data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from swisscheese.data.converters import CONVERTERS, Converter, ConverterStack, get_converter
from swisscheese.data.converters.codeword import STOPWORDS

# Converters tried when decoding a report: every invertible one that maps text to text.
# multiturn_split shapes a conversation rather than a text, and translation's inverse
# needs the instance that translated.
_NOT_DECODED = frozenset({"multiturn_split", "translation"})
# Share of a decoded text's words that must be words of the data for it to count as read.
READ_SHARE = 0.7
# Separators after which an instruction prefix may end ("Decode this Morse: <code>").
_PREFIX_END = re.compile(r":\s+|\n+")
_WORDS = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class AttackForm:
    """How a report was made from a request: prefix + stack(request) + suffix.

    `stack` empty and `request` None: the form is unknown (only the whole report can be
    disguised). `request` is the payload the report carries, when it was found.
    """

    prefix: str = ""
    stack: tuple[str, ...] = ()
    suffix: str = ""
    request: str | None = None

    @property
    def known(self) -> bool:
        return self.request is not None

    @property
    def name(self) -> str:
        if not self.known:
            return "unknown"
        parts = [*(["prefix"] if self.prefix.strip() else []), *(self.stack or ("template",))]
        return "+".join(parts)

    def apply(self, request: str, seed: int = 0, prefix: str | None = None) -> str:
        """`request` in this form (with another `prefix`, when given)."""
        text = request
        for name in self.stack:
            text = get_converter(name, seed=seed).encode(text)
        return (self.prefix if prefix is None else prefix) + text + self.suffix


def read_share(text: str, vocabulary: frozenset[str]) -> float:
    """The share of `text`'s words (runs of a-z, after case folding) in `vocabulary`; 0
    for a text of fewer than two words."""
    words = _WORDS.findall(text.lower())
    if len(words) < 2:
        return 0.0
    # A lone letter (char spacing, Morse read wrongly) is not a word read.
    return sum(w in STOPWORDS or (len(w) > 1 and w in vocabulary) for w in words) / len(words)


def _decoders() -> list[tuple[str, ...]]:
    singles = sorted(n for n, c in CONVERTERS.items()
                     if n not in _NOT_DECODED and getattr(c, "invertible", False))
    return [(n,) for n in singles] + [(a, b) for a in singles for b in singles if a != b]


def _try_decode(stack_names: tuple[str, ...], text: str) -> str | None:
    convs: list[Converter] = [get_converter(n) for n in stack_names]
    try:
        return ConverterStack(convs).decode(text)
    except Exception:  # noqa: BLE001 - any failure to decode only means "not this stack"
        return None


def _splits(prompt: str) -> list[tuple[str, str]]:
    """(prefix, body) candidates: the whole prompt, then after each instruction-like end."""
    out = [("", prompt)]
    for m in _PREFIX_END.finditer(prompt):
        if 0 < m.end() < len(prompt):
            out.append((prompt[:m.end()], prompt[m.end():]))
    return out


def analyse(prompt: str, vocabulary: frozenset[str],
            known_requests: Sequence[str] = ()) -> AttackForm:
    """The form of one reported prompt (see the module docstring).

    Decoding wins over template matching: a report that needs no decoding (it reads as
    plain language) is matched against `known_requests`, the longest one found inside it
    becoming the payload and the rest a template. A report that nothing explains gets
    an unknown form.
    """
    plain_read = read_share(prompt, vocabulary)
    best: tuple[tuple[float, int, int], AttackForm] | None = None
    if plain_read < READ_SHARE:
        for prefix, body in _splits(prompt):
            for names in _decoders():
                decoded = _try_decode(names, body)
                if decoded is None or decoded == body:
                    continue
                share = read_share(decoded, vocabulary)
                if share < READ_SHARE:
                    continue
                # Best reading; then fewer converters; then the longest decoded body.
                key = (share, -len(names), len(body))
                if best is None or key > best[0]:
                    best = (key, AttackForm(prefix, names, "", decoded.strip()))
            if best is not None and best[0][0] >= 0.999:
                break
        if best is not None:
            return best[1]
    # A template converter of the registry explains a plain-language report exactly.
    for names in (("jailbreak_template",), ("roleplay",)):
        decoded = _try_decode(names, prompt)
        if decoded is not None and decoded != prompt and decoded.strip():
            return AttackForm("", names, "", decoded)
    low = prompt.casefold()
    found = [r for r in known_requests if len(r) >= 8 and r.casefold() in low]
    if found:
        req = max(found, key=len)
        i = low.index(req.casefold())
        return AttackForm(prompt[:i], (), prompt[i + len(req):], prompt[i:i + len(req)])
    return AttackForm()
