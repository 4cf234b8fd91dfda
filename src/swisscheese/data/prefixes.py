"""Prefixes of a reply to train a streaming output classifier on: the cuts where a stream
is most often caught mid-sentence, so the score rises on the first step of a harmful
procedure rather than at its end.
"""

from __future__ import annotations

# Prefixes shorter than this say too little to label: "Here is" opens harmful and
# harmless replies alike.
MIN_PREFIX_CHARS = 12
# Prefixes kept per reply (plus the whole reply): the early ones teach the stream to stop
# early; later ones add little beyond the whole reply and cost streaming time.
MAX_PREFIXES = 4


def reply_cuts(text: str) -> list[str]:
    """The text and its first MAX_PREFIXES prefixes ending at a line or sentence end; for
    a text with a header line, also the body without it and its first prefixes (the
    steps alone must score too)."""
    out: list[str] = []

    def cuts(t: str) -> None:
        ends = []
        for i, ch in enumerate(t[:-1]):
            if ch == "\n" or (ch == "." and t[i + 1] == " "):
                end = i if ch == "\n" else i + 1
                if end >= MIN_PREFIX_CHARS:
                    ends.append(end)
        out.extend(t[:e] for e in ends[:MAX_PREFIXES])
        out.append(t)

    cuts(text)
    head, sep, body = text.partition("\n")
    if sep and body.strip():
        cuts(body)
    return list(dict.fromkeys(x for x in out if x.strip()))


def word_cuts(text: str) -> list[str]:
    """Prefixes of the first line of `text` ending before each word boundary (at least
    MIN_PREFIX_CHARS long), with and without the space: the chunk edges a stream
    reaches before the line says what it is about."""
    line = text.partition("\n")[0]
    out = []
    for i, ch in enumerate(line):
        if ch == " " and i >= MIN_PREFIX_CHARS:
            out += [line[:i], line[:i + 1]]
    return out
