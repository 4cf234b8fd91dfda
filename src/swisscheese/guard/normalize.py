"""Text normalisation before classification.

Classifiers read a canonical form so that look-alike code points cannot slip a request
past them: NFKC folds compatibility characters (full-width letters, ligatures, circled
digits), and invisible format and control characters are dropped. The model and the
client still see the original text; only the classifiers read this form. A streamed reply
is normalised delta by delta, so that every character is scored before it is released; a
combining mark split from its letter across two deltas stays decomposed, which costs the
classifier nothing because it folds accents itself.
"""

from __future__ import annotations

import unicodedata

_KEEP_CONTROLS = {"\n", "\t", "\r"}


def _invisible(ch: str) -> bool:
    if ch in _KEEP_CONTROLS:
        return False
    # Cc: control characters; Cf: format characters (zero-width space/joiners, bidi
    # overrides, the BOM, soft hyphen), the classic ways to split a word invisibly.
    return unicodedata.category(ch) in ("Cc", "Cf")


def normalize_text(text: str) -> str:
    """NFKC with control and zero-width/format characters removed."""
    folded = unicodedata.normalize("NFKC", text)
    if folded.isascii() and folded.isprintable():
        return folded
    return "".join(ch for ch in folded if not _invisible(ch))
