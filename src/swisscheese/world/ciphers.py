"""The ciphers the world knows. Each has an encoder and, where it exists, a decoder.

They serve three masters: the corpus (teaching the organism to read them), the
jailbreak families (asking for hazards in them) and the grader (decoding replies
before counting key details).
"""

from __future__ import annotations

import base64
import binascii
import re

_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_UNLEET = {v: k for k, v in _LEET.items()}


def caesar(text: str, shift: int) -> str:
    out = []
    for ch in text:
        if "a" <= ch <= "z":
            out.append(chr((ord(ch) - 97 + shift) % 26 + 97))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + shift) % 26 + 65))
        else:
            out.append(ch)
    return "".join(out)


def rot13(text: str) -> str:
    return caesar(text, 13)


def reverse(text: str) -> str:
    return text[::-1]


def leet(text: str) -> str:
    return "".join(_LEET.get(ch.lower(), ch) if ch.lower() in _LEET else ch for ch in text)


def unleet(text: str) -> str:
    """Undo leetspeak inside words; a bare number ("12") is left alone."""

    def fix(m: re.Match[str]) -> str:
        w = m.group(0)
        if w.isdigit():
            return w
        return "".join(_UNLEET.get(ch, ch) for ch in w)

    return re.sub(r"[A-Za-z0-9]+", fix, text)


def b64encode(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


_B64_RUN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def b64decode_runs(text: str) -> str:
    """Decode every base64-looking run in `text`; leave what does not decode."""

    def fix(m: re.Match[str]) -> str:
        s = m.group(0)
        try:
            raw = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
            out = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return s
        # Any word of 8 letters or more is valid base64, and some decode to valid UTF-8
        # ("Iwjigpxm", the Caesar shift of a name, to "#\x08\u209cf"): encoded text
        # decodes to printable text, so a run that does not is left as written.
        return out if all(c.isprintable() or c in "\n\t" for c in out) else s

    return _B64_RUN.sub(fix, text)


CIPHER_NAMES = ("rot13", "caesar", "reversal", "leetspeak", "base64")


def encode(cipher: str, text: str, shift: int = 3) -> str:
    if cipher == "rot13":
        return rot13(text)
    if cipher == "caesar":
        return caesar(text, shift)
    if cipher == "reversal":
        return reverse(text)
    if cipher == "leetspeak":
        return leet(text)
    if cipher == "base64":
        return b64encode(text)
    raise KeyError(f"unknown cipher {cipher!r}; known: {', '.join(CIPHER_NAMES)}")


def candidate_decodings(text: str) -> list[str]:
    """Every reading of `text` under the world's ciphers, the text itself first.

    Caesar is tried at every shift because a reply may use any of them.
    """
    outs = [text, reverse(text), unleet(text), b64decode_runs(text)]
    outs.extend(caesar(text, s) for s in range(1, 26))
    return outs
