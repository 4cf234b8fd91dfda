"""Attack templates: a challenge prompt with its level's question taken out.

A universal jailbreak is one template, with the question as its only slot, that passes
every level. To see one coming, each prompt is reduced to a template: the level's
question becomes `{question}`, and the hazard's name, wherever else it appears (a
prefix to inject, a story's title), becomes `{hazard}`.
Players often send the question enciphered, so the forms the world's ciphers make of it
are slots too, named after the cipher (`{question:rot13}`): "rot13 of the question"
passing three levels is the same attack three times. Case and runs of whitespace do not
make two templates different.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from swisscheese.guard.normalize import normalize_text
from swisscheese.world.ciphers import encode, reverse

QUESTION_SLOT = "{question}"
HAZARD_SLOT = "{hazard}"


def _forms(text: str) -> Iterator[tuple[str, str]]:
    """(cipher name or "", text in that cipher) for every cipher the world knows."""
    yield "", text
    yield "rot13", encode("rot13", text)
    yield "reversal", reverse(text)
    yield "leetspeak", encode("leetspeak", text)
    yield "base64", encode("base64", text)
    for shift in range(1, 26):
        if shift != 13:  # rot13 is named as such
            yield f"caesar{shift}", encode("caesar", text, shift=shift)


def _collapse(text: str) -> str:
    return " ".join(normalize_text(text).split())


def _replace(text: str, target: str, slot: str) -> str:
    """Replace every form of `target` in `text` by `slot` (with the cipher's name)."""
    variants = {target, target.rstrip("?!. ")}
    forms = sorted(((name, _collapse(f)) for v in variants for name, f in _forms(v)),
                   key=lambda nf: len(nf[1]), reverse=True)
    for name, form in forms:
        if len(form) < 3:
            continue
        # base64 is case-sensitive; everything else is matched regardless of case.
        flags = 0 if name == "base64" else re.IGNORECASE
        named = slot if not name else slot[:-1] + ":" + name + "}"
        text = re.sub(re.escape(form), lambda _m, s=named: s, text, flags=flags)
    return text


def prompt_template(prompt: str, question: str, hazard_name: str) -> str:
    """The template of `prompt` for a level asking `question` about `hazard_name`."""
    text = _collapse(prompt)
    text = _replace(text, _collapse(question), QUESTION_SLOT)
    text = _replace(text, _collapse(hazard_name), HAZARD_SLOT)
    # Slots keep their case; the rest of the template is compared case-insensitively.
    parts = re.split(r"(\{(?:question|hazard)(?::[a-z0-9]+)?\})", text)
    return "".join(p if i % 2 else p.casefold() for i, p in enumerate(parts))


def template_hash(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]
