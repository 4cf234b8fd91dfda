"""The request in another language: a model's translation, or the world's Velsh."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter
from swisscheese.models.base import ChatModel, GenerationParams, Message
from swisscheese.world.language import Language

PROMPT = "Translate the following text into {language}. Reply with the translation only.\n\n{text}"


class TranslationConverter(Converter):
    """Translates the request with `model` into `language`, or into the world's Velsh.

    With a model, `decode` asks the model to translate back into English; that is not
    exact, so such an instance has `invertible = False` and `decode` raises.

    Without a model (the default), it uses `swisscheese.world.language.Language(seed)`
    (or the `velsh` instance given, e.g. `world.language`). Velsh is a word-for-word
    cipher, so that instance is `invertible`: `decode` back-translates every Velsh word
    this instance has produced. Exact on text whose words are lower case (a sentence's
    first word may be capitalised): Velsh keeps a mid-sentence capitalised word as a
    loan word and has no upper-case words. Back-translation on a fresh instance only
    knows the words that instance has translated.
    """

    name = "translation"
    family = "translation"
    invertible = False  # per instance: True for Velsh, False for a model

    def __init__(self, model: ChatModel | None = None, language: str | None = None,
                 seed: int = 0, velsh: Language | None = None,
                 params: GenerationParams | None = None) -> None:
        super().__init__(seed)
        if model is not None and velsh is not None:
            raise ValueError("give a model or a Velsh language, not both")
        if model is not None and not language:
            raise ValueError("a model translation needs a target language=")
        self.model = model
        self.velsh = None if model is not None else (velsh if velsh is not None
                                                     else Language(seed))
        self.language = language or Language.name
        if model is None and self.language != Language.name:
            raise ValueError(f"without a model only {Language.name} is available, "
                             f"not {self.language!r}; pass model= for other languages")
        self.params = params or GenerationParams(max_new_tokens=512, temperature=0.0, seed=seed)
        self.invertible = self.velsh is not None

    def _ask(self, text: str, language: str) -> str:
        assert self.model is not None
        prompt = PROMPT.format(language=language, text=text)
        return self.model.generate([Message("user", prompt)], self.params).content.strip()

    def _encode(self, text: str) -> str:
        if self.velsh is not None:
            return self.velsh.translate(text)
        return self._ask(text, self.language)

    def _decode(self, text: str) -> str:
        assert self.velsh is not None  # a model instance is not invertible
        return self.velsh.back_translate(text)

    def back_translate(self, text: str) -> str:
        """English again, best effort: the model's back-translation or Velsh's inverse."""
        if self.velsh is not None:
            return self.velsh.back_translate(text)
        return self._ask(text, "English")

    def __repr__(self) -> str:
        return (f"TranslationConverter(model={getattr(self.model, 'name', None)!r}, "
                f"language={self.language!r}, seed={self.seed})")
