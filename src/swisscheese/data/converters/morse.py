"""International Morse code: letters, digits, common punctuation and spaces."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter

_CODES = {
    "a": ".-", "b": "-...", "c": "-.-.", "d": "-..", "e": ".", "f": "..-.", "g": "--.",
    "h": "....", "i": "..", "j": ".---", "k": "-.-", "l": ".-..", "m": "--", "n": "-.",
    "o": "---", "p": ".--.", "q": "--.-", "r": ".-.", "s": "...", "t": "-", "u": "..-",
    "v": "...-", "w": ".--", "x": "-..-", "y": "-.--", "z": "--..",
    "0": "-----", "1": ".----", "2": "..---", "3": "...--", "4": "....-", "5": ".....",
    "6": "-....", "7": "--...", "8": "---..", "9": "----.",
    ".": ".-.-.-", ",": "--..--", "?": "..--..", "'": ".----.", "!": "-.-.--", "/": "-..-.",
    "(": "-.--.", ")": "-.--.-", "&": ".-...", ":": "---...", ";": "-.-.-.", "=": "-...-",
    "+": ".-.-.", "-": "-....-", "_": "..--.-", '"': ".-..-.", "$": "...-..-", "@": ".--.-.",
}
_CHARS = {code: ch for ch, code in _CODES.items()}
WORD_GAP = "/"  # a space between words; letters are separated by one space


def normalise(text: str) -> str:
    """What Morse keeps of `text`: lower-cased, with characters that have no code dropped."""
    return "".join(ch for ch in text.lower() if ch == " " or ch in _CODES)


class MorseConverter(Converter):
    """Morse code, letters separated by spaces and words by " / ".

    Morse has no case and no code for most symbols, so the round trip gives
    `normalise(text)`: decoding always yields lower case, and characters without a
    code (newlines, accents, most symbols) are dropped on encoding. Exact on lower-case
    text made of letters, digits, spaces and the punctuation in the table.
    """

    name = "morse"
    family = "encoding"
    invertible = True

    def _encode(self, text: str) -> str:
        return " ".join(WORD_GAP if ch == " " else _CODES[ch] for ch in normalise(text))

    def _decode(self, text: str) -> str:
        out = []
        for token in text.split():
            if token == WORD_GAP:
                out.append(" ")
            elif token in _CHARS:
                out.append(_CHARS[token])
            else:
                raise ValueError(f"not Morse code: {token!r}")
        return "".join(out)
