"""An output classifier that reads a reply written in a Caesar shift back before scoring.

    >>> clf = DecodingStreamClassifier(base="ngram-stream", context="exchange")  # doctest: +SKIP

A model asked to "answer in rot13" writes a reply no output classifier reads unless its
training showed that shift of that content: the default organism bundle stopped the
world's harmless crafts answered in rot13 most often of its fresh-traffic false positives
at the output (6 of 15 on one 20,000-conversation set), and a harmful answer in another
shift would read as noise. A Caesar shift maps each character on its own, so a stream can
be read back as it comes, once its first words say which shift it is in
(`ciphers.reply_shift`: at the first word end where they read as English as written or at
exactly one shift, else at the first sentence end or DECISION_CHARS characters in).

Until then the reply is scored as written by the base (so nothing is held back for the
choice, and what a guard releases meanwhile was scored below its threshold as written);
once a shift is chosen the base starts over on the reply read back, and every later delta
is read back before the base sees it. The score of a prefix is therefore a function of
the prefix alone, and `predict_exchange` reads whole replies back in one go. A reply that
switches cipher after its first words is read as it began. Reversal is not read (a stream
cannot be read backwards before it ends).

With `aliases=True` (the default) the conversation is read with every code word it defines
written as the subject it stands for (`decoding.resolve_aliases`: "call it the sunny broth"
after a turn about the Zarnok toxin): the exchange classifier then judges a reply by the
subject asked about, not by the code word. Without it the default organism bundle scored a
harmless craft asked under a code word at 0.999 (the world's code words read as harm when
paired otherwise than in training), and such crafts were all of its output false positives
on fresh traffic. With `reply_aliases=True` (the default) the reply's code words are written
as their subjects too, as the reply arrives (`decoding.AliasReader`: text that may still
grow into a code word is held back until the next characters decide, and `pending_chars`
counts it, so a guard never releases it unread): a reply "in code words" then reads as the
answer it stands for, and the code words themselves ("bread") stop reading as harm.

The saved directory holds config.json (the base's name) and base/, the base classifier
in its own format.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import (
    Classifier,
    Conversation,
    StreamingClassifier,
    StreamState,
    check_texts,
)
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.classifiers.persist import CONFIG_FILE, read_config, write_config
from swisscheese.classifiers.registry import get_classifier, load_classifier

if TYPE_CHECKING:
    from swisscheese.classifiers.backends.decoding import AliasReader

FORMAT = "swisscheese.classifiers.decoding-stream"
FORMAT_VERSION = 1
BASE_DIR = "base"


def _messages(conversation: Conversation) -> list[Mapping[str, Any]] | None:
    """The messages of a list conversation as mappings, or None when one has no string
    content (the base then says what is wrong with it)."""
    assert conversation is not None and not isinstance(conversation, str)
    msgs = [m if isinstance(m, Mapping) else
            {"role": getattr(m, "role", "user"), "content": getattr(m, "content", None)}
            for m in conversation]
    return msgs if all(isinstance(m.get("content"), str) for m in msgs) else None


def resolve_conversation(conversation: Conversation) -> Conversation:
    """`conversation` with the code words it defines written as their subjects
    (`decoding.resolve_aliases`); left as it is when a message has no string content."""
    from swisscheese.classifiers.backends.decoding import resolve_aliases

    if conversation is None:
        return None
    if isinstance(conversation, str):
        return resolve_aliases([conversation])[0]
    msgs = _messages(conversation)
    if msgs is None:
        return conversation
    texts = resolve_aliases([m["content"] for m in msgs])
    return [{**m, "content": t} for m, t in zip(msgs, texts, strict=True)]


def alias_reader(conversation: Conversation) -> AliasReader | None:
    """What reads a reply to `conversation` with the code words the conversation defined
    written as their subjects; None when it defines none."""
    from swisscheese.classifiers.backends.decoding import AliasReader, alias_keys

    if conversation is None:
        return None
    if isinstance(conversation, str):
        texts = [conversation]
    else:
        msgs = _messages(conversation)
        texts = [] if msgs is None else [m["content"] for m in msgs]
    keys = alias_keys(texts)
    return AliasReader(keys) if keys else None


def resolve_reply(conversation: Conversation, reply: str) -> str:
    """The whole reply as a stream to `conversation` reads it: its code words written as
    their subjects."""
    reader = alias_reader(conversation)
    return reply if reader is None else reader.resolve(reply)


def read_back(reply: str) -> str:
    """The whole reply as the wrapper's base reads it: at its chosen Caesar shift."""
    from swisscheese.data.converters.ciphers import read_reply

    return read_reply(reply)


def _check_flags(aliases: object, reply_aliases: object) -> None:
    for key, value in (("aliases", aliases), ("reply_aliases", reply_aliases)):
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")


@dataclass
class DecodingStreamState(StreamState):
    """The base's state, and until a shift is chosen the raw reply so far and a copy of
    the base's fresh state to start over from."""

    base: StreamState = field(default_factory=StreamState)
    fresh: StreamState | None = None
    buffer: str = ""
    shift: int | None = None  # None until chosen; 0 reads the reply as written
    scanned: int = 0  # where `reply_shift` resumes
    reader: AliasReader | None = None  # the conversation's code words, if any
    held: str = ""  # read back, not yet passed on: it may be the start of a code word


class DecodingStreamClassifier(Classifier, StreamingClassifier):
    """Streaming classifier: a base streaming backend reading the reply at the Caesar shift
    its first words are in (see the module docstring).

    `DecodingStreamClassifier(base="ngram-stream", aliases=True, reply_aliases=True,
    **base_params)`: other keyword arguments (`context`, `seed`, ...) go to the base's
    constructor; it reads what its base reads (`output_context`); `aliases` resolves the
    code words a conversation defines before the base reads it, `reply_aliases` those
    code words in the reply.
    """

    name: ClassVar[str] = "decoding-stream"
    contexts: ClassVar[tuple[str, ...]] = ("reply", "exchange")
    base_option: ClassVar[str] = "base"
    default_base: ClassVar[str] = "ngram-stream"

    def __init__(self, base: str = "ngram-stream", aliases: bool = True,
                 reply_aliases: bool = True, **base_params: Any) -> None:
        if base == self.name:
            raise ValueError("the base of a decoding-stream classifier cannot be another one")
        _check_flags(aliases, reply_aliases)
        clf = get_classifier(base, **base_params)
        if not isinstance(clf, StreamingClassifier):
            raise ValueError(f"base {base!r} is not a streaming classifier")
        self.base_name, self.aliases, self.reply_aliases = base, aliases, reply_aliases
        self.base: StreamingClassifier = clf

    @classmethod
    def wrap(cls, base: StreamingClassifier, aliases: bool = True,
             reply_aliases: bool = True) -> Self:
        """A reader around an already fitted streaming classifier (it is not copied)."""
        if not isinstance(base, Classifier) or isinstance(base, cls):
            raise ValueError(f"cannot wrap a {type(base).__name__}")
        _check_flags(aliases, reply_aliases)
        obj = cls.__new__(cls)
        obj.base_name, obj.base = base.name, base
        obj.aliases, obj.reply_aliases = aliases, reply_aliases
        return obj

    def _conversations(self, conversations: Sequence[Conversation]) -> list[Conversation]:
        if not self.aliases:
            return list(conversations)
        return [resolve_conversation(c) for c in conversations]

    def _exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str]
                   ) -> tuple[list[Conversation], list[str]]:
        """The (conversation, reply) pairs as the base reads them."""
        texts = self.read_back(replies)
        if len(conversations) != len(texts):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(texts)} replies")
        if self.reply_aliases:
            texts = [resolve_reply(c, t) for c, t in zip(conversations, texts, strict=True)]
        return self._conversations(conversations), texts

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base={self.base!r}, aliases={self.aliases}, "
                f"reply_aliases={self.reply_aliases})")

    @property  # type: ignore[override]
    def progress(self) -> Any:
        return self.base.progress  # type: ignore[attr-defined]

    @progress.setter
    def progress(self, value: Any) -> None:
        self.base.progress = value  # type: ignore[attr-defined]

    @property
    def output_context(self) -> str:
        return self.base.output_context

    @property
    def _base_clf(self) -> Classifier:
        assert isinstance(self.base, Classifier)
        return self.base

    def read_back(self, replies: Sequence[str]) -> list[str]:
        return [read_back(r) for r in check_texts(replies)]

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        self._base_clf.fit(self.read_back(texts), labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self._base_clf.predict_proba(self.read_back(texts))

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        self.base.fit_exchanges(*self._exchanges(conversations, replies), labels)
        return self

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        return self.base.predict_exchange(*self._exchanges(conversations, replies))

    def prefetch(self, replies: Sequence[str], conversations: Sequence[Conversation],
                 chunk_chars: int) -> None:
        convs, texts = self._exchanges(conversations, replies)
        self.base.prefetch(texts, convs, chunk_chars)

    def start(self, conversation: Conversation = None) -> DecodingStreamState:
        base = self.base.start(resolve_conversation(conversation) if self.aliases
                               else conversation)
        reader = alias_reader(conversation) if self.reply_aliases else None
        return DecodingStreamState(base=base, fresh=copy.deepcopy(base), reader=reader)

    def pending_chars(self, state: StreamState) -> int:
        assert isinstance(state, DecodingStreamState)
        return len(state.held) + self.base.pending_chars(state.base)

    def _advance(self, state: StreamState, delta: str) -> float:
        assert isinstance(state, DecodingStreamState)
        if state.shift is not None:
            return self._feed(state, delta)
        from swisscheese.data.converters.ciphers import reply_shift

        state.buffer += delta
        shift, state.scanned = reply_shift(state.buffer, False, state.scanned)
        if not shift:  # undecided, or as written: the base reads the delta as it is
            score = self._feed(state, delta)
            if shift == 0:
                self._decide(state, 0)
            return score
        return self._restart(state, shift)

    def finish(self, state: StreamState) -> tuple[StreamState, float]:
        assert isinstance(state, DecodingStreamState)
        if state.shift is None:
            from swisscheese.data.converters.ciphers import reply_shift

            shift, _ = reply_shift(state.buffer, True, state.scanned)
            if shift:
                state.max_score = max(state.max_score, self._restart(state, shift))
            else:
                self._decide(state, 0)
        if state.held:
            state.max_score = max(state.max_score, self._feed(state, "", ended=True))
        state.base, score = self.base.finish(state.base)
        state.last_score = score
        state.max_score = max(state.max_score, score)
        return state, score

    def _feed(self, state: DecodingStreamState, delta: str, ended: bool = False) -> float:
        if state.shift:
            from swisscheese.data.converters.ciphers import shift_letters

            delta = shift_letters(delta, state.shift)
        if state.reader is not None:
            delta, state.held = state.reader.feed(state.held, delta, ended)
        state.base, score = self.base.update(state.base, delta)
        return score

    def _decide(self, state: DecodingStreamState, shift: int) -> None:
        state.shift, state.buffer, state.fresh = shift, "", None

    def _restart(self, state: DecodingStreamState, shift: int) -> float:
        """The base starts over on the reply so far, read at `shift`."""
        assert state.fresh is not None
        text, state.base, state.held = state.buffer, state.fresh, ""
        self._decide(state, shift)
        return self._feed(state, text)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._base_clf.save(d / BASE_DIR)
        write_config(d, {"name": self.name, "format": FORMAT,
                         "format_version": FORMAT_VERSION, "base": self.base_name,
                         "aliases": self.aliases, "reply_aliases": self.reply_aliases})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        meta = read_config(d / CONFIG_FILE, FORMAT, FORMAT_VERSION)
        # Options written before they existed are off: the base was trained without them.
        flags = {k: meta.get(k, False) for k in ("aliases", "reply_aliases")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ClassifierError(f"{d / CONFIG_FILE}: {key!r} must be true or false, "
                                      f"got {value!r}")
        base = load_classifier(d / BASE_DIR)
        if base.name != meta.get("base") or not isinstance(base, StreamingClassifier):
            raise ClassifierError(f"{d / BASE_DIR}: holds a {base.name!r} classifier, but "
                                  f"{d / CONFIG_FILE} names the streaming base "
                                  f"{meta.get('base')!r}")
        return cls.wrap(base, flags["aliases"], flags["reply_aliases"])
