"""The layered guard: input classifier, model, streaming output classifier.

`Guard` holds one guard bundle for its whole life (a hot swap makes a new `Guard`, so a
stream in flight finishes on the bundle it started with). `Guard.session` guards one
reply: `check_input` first, then `push` each model delta and release only what it
returns, then `finish`. `GuardedChatModel` wraps any `ChatModel` with a guard and is itself
a `ChatModel`, so the red team and the evaluations can attack guarded targets in-process
exactly as they attack bare ones, and the gateway streams through the same session code.

Fail closed: an exception inside a classifier blocks (layer "error"); it never lets text
through. A model failure is not a guard decision: it propagates to the caller, after the
session records it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from swisscheese.bundles import GuardBundle
from swisscheese.classifiers.base import render_conversation
from swisscheese.classifiers.streamguard import StreamGuard
from swisscheese.guard.normalize import normalize_text
from swisscheese.models.base import (
    ChatModel,
    ConversationLike,
    GenerationParams,
    Message,
    as_messages,
)

DEFAULT_REFUSAL = "I can't help with that request."
# Characters the output layer holds back before release (see StreamGuard); the same
# default the classifier evaluation uses for its stop-rate figures.
DEFAULT_HOLD_BACK = 32
LAYERS = ("input", "output")


@dataclass
class Decision:
    """What the guard decided about one reply, for the store and for clients.

    `layer` is the layer that blocked ("input", "output" or "error" when a classifier
    failed), None when the reply went through. `output_score` is the cumulative maximum of
    the streaming scores. Latencies are milliseconds.
    """

    blocked: bool = False
    layer: str | None = None
    input_score: float | None = None
    output_score: float | None = None
    error: str | None = None
    bundle_version: int | None = None
    released_chars: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Per-category input scores (category id -> score) where the bundle has a category
    # scorer; None otherwise.
    categories: dict[str, float] | None = None
    # Which stage of a cascade decided each layer ("input"/"output" -> 1 or 2), where the
    # bundle's classifiers are cascades; None otherwise.
    stages: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalized_messages(conversation: ConversationLike) -> list[Message]:
    """The conversation as the classifiers read it (see `normalize_text`)."""
    return [Message(m.role, normalize_text(m.content)) for m in as_messages(conversation)]


class GuardSession:
    """Guards one reply. Use in order: `check_input`, `push` per delta, `finish`."""

    def __init__(self, guard: Guard, conversation: ConversationLike) -> None:
        self.guard = guard
        self.messages = normalized_messages(conversation)
        self.decision = Decision(bundle_version=guard.bundle.version if guard.bundle else None)
        self._stream: StreamGuard | None = None
        self._t0 = time.perf_counter()
        self._output_s = 0.0

    def _ms(self, seconds: float) -> float:
        return round(seconds * 1000.0, 3)

    def _block(self, layer: str, error: str | None = None) -> None:
        self.decision.blocked = True
        self.decision.layer = layer
        self.decision.error = error

    def _record_stage(self, layer: str, stage: int | None) -> None:
        if stage is not None:
            self.decision.stages = {**(self.decision.stages or {}), layer: stage}

    def check_input(self) -> bool:
        """Score the whole conversation; True when the reply may be generated."""
        bundle = self.guard.bundle
        t = time.perf_counter()
        try:
            if bundle is not None and self.guard.input_layer:
                text = render_conversation(self.messages)
                scores, stages = bundle.input_stages([text])
                score = float(scores[0])
                self.decision.input_score = score
                if stages is not None:
                    self._record_stage("input", int(stages[0]))
                if bundle.categories is not None:
                    self.decision.categories = bundle.category_scores([text])[0]
                if bundle.flag_input(score):
                    self._block("input")
            if not self.decision.blocked and bundle is not None and self.guard.output_layer:
                threshold = bundle.thresholds["output"]
                calm = self.guard.calm_below
                self._stream = StreamGuard(bundle.output, threshold,
                                           hold_back=self.guard.hold_back,
                                           conversation=self.messages,
                                           calm_below=None if calm is None else calm * threshold)
        except Exception as e:  # noqa: BLE001 - fail closed on any classifier failure
            self._block("error", f"input layer: {type(e).__name__}: {e}")
        self.decision.latency_ms["input"] = self._ms(time.perf_counter() - t)
        return not self.decision.blocked

    def push(self, delta: str) -> str:
        """Score a model delta; returns the text now safe to release ("" once blocked)."""
        return self._push(delta, lambda stream, d: stream.push(d))

    def push_hidden(self, delta: str, hidden: Any) -> str:
        """A step of `Guard.model_stream`'s hidden-state path: the output probe reads the
        served model's states of the text pushed before (`StreamGuard.push_hidden`)."""
        return self._push(delta, lambda stream, d: stream.push_hidden(d, hidden))

    def _push(self, delta: str, score: Callable[[StreamGuard, str], tuple[str, bool]]) -> str:
        if self.decision.blocked:
            return ""
        if "first_token" not in self.decision.latency_ms:
            self.decision.latency_ms["first_token"] = self._ms(time.perf_counter() - self._t0)
        if self._stream is None:
            self.decision.released_chars += len(delta)
            return delta
        t = time.perf_counter()
        try:
            out, blocked = score(self._stream, normalize_text(delta))
        except Exception as e:  # noqa: BLE001 - fail closed on any classifier failure
            self._block("error", f"output layer: {type(e).__name__}: {e}")
            return ""
        finally:
            self._output_s += time.perf_counter() - t
            self.decision.output_score = self._stream.max_score
            self._record_stage("output", getattr(self._stream.state, "stage", None))
        if blocked:
            self._block("output")
            return ""
        self.decision.released_chars += len(out)
        return out

    def finish(self) -> str:
        """End of the reply: the held tail, already scored ("" when blocked)."""
        tail = ""
        if not self.decision.blocked and self._stream is not None:
            tail = self._flush(self._stream)
        self.decision.latency_ms["output"] = self._ms(self._output_s)
        self.decision.latency_ms["total"] = self._ms(time.perf_counter() - self._t0)
        return tail

    def _flush(self, stream: StreamGuard) -> str:
        """The held tail, once the output layer has read all of it (a backend that
        scores in chunks reads its last one here, and may still block)."""
        t = time.perf_counter()
        try:
            tail, blocked = stream.flush()
        except Exception as e:  # noqa: BLE001 - fail closed on any classifier failure
            self._block("error", f"output layer: {type(e).__name__}: {e}")
            return ""
        finally:
            self._output_s += time.perf_counter() - t
            self.decision.output_score = stream.max_score
            self._record_stage("output", getattr(stream.state, "stage", None))
        if blocked:
            self._block("output")
            return ""
        self.decision.released_chars += len(tail)
        return tail

    def fail(self, error: BaseException) -> None:
        """Record a model failure (the caller reports it; it is not a block)."""
        self.decision.error = f"model: {type(error).__name__}: {error}"
        self.finish()


class Guard:
    """The input and output layers of one guard bundle (None: no classifier layers)."""

    def __init__(self, bundle: GuardBundle | None, *, input_layer: bool = True,
                 output_layer: bool = True, hold_back: int = DEFAULT_HOLD_BACK,
                 refusal: str = DEFAULT_REFUSAL, calm_below: float | None = None) -> None:
        """`calm_below`, a fraction of the output threshold or None: while the reply's
        cumulative score stays below it, scored text is released without the hold-back
        window (see `StreamGuard`); None holds back every reply."""
        if hold_back < 0:
            raise ValueError(f"hold_back must be >= 0 characters, got {hold_back}")
        if calm_below is not None and not 0.0 <= calm_below <= 1.0:
            raise ValueError(f"calm_below is a fraction of the output threshold in [0, 1], "
                             f"got {calm_below}")
        self.calm_below = calm_below
        self.bundle = bundle
        self.input_layer = input_layer
        self.output_layer = output_layer
        self.hold_back = hold_back
        self.refusal = refusal
        self._hidden: dict[tuple[int, str], tuple[int, ...] | None] = {}

    @property
    def layers(self) -> list[str]:
        if self.bundle is None:
            return []
        return [n for n, on in zip(LAYERS, (self.input_layer, self.output_layer), strict=True)
                if on]

    def session(self, conversation: ConversationLike) -> GuardSession:
        return GuardSession(self, conversation)

    def hidden_layers(self, model: Any) -> tuple[int, ...] | None:
        """The `hidden_states` indices the output layer reads from `model`'s own generation
        (a probe fitted on that very model, served locally), or None: it reads text."""
        out = self.bundle.output if self.bundle is not None and self.output_layer else None
        reads = getattr(out, "reads_states_of", None)
        path = getattr(model, "path", None)
        if out is None or not callable(reads) or path is None or not callable(
                getattr(model, "stream_hidden", None)):
            return None
        key = (id(out), str(path))
        if key not in self._hidden:  # a fingerprint reads the weight files: once per model
            self._hidden[key] = tuple(out.hidden_indices) if reads(path) else None  # type: ignore[attr-defined]
        return self._hidden[key]

    def model_stream(self, model: ChatModel, conversation: ConversationLike,
                     params: GenerationParams | None) -> Iterator[str | tuple[str, Any]]:
        """The model's reply for `guarded_deltas`: (delta, hidden states) steps where the
        output layer can read the served model's own states (see `hidden_layers`; not with
        stop sequences, which cut text the states have read), else text deltas."""
        layers = self.hidden_layers(model)
        if layers is None or (params is not None and params.stop):
            return iter(model.stream(conversation, params))
        return iter(model.stream_hidden(conversation, params, layers=layers))  # type: ignore[attr-defined]

    def guard_stream(self, session: GuardSession,
                     deltas: Iterator[str | tuple[str, Any]]) -> Iterator[str]:
        """Released text of a model stream, after `session.check_input()` passed.

        Stops pulling from the model as soon as the output layer blocks; closes the model's
        stream either way.
        """
        for ev in guarded_deltas(session, deltas):
            if ev.released:
                yield ev.released


# Kinds of `StreamEvent`: a model delta went through the output layer, the layer blocked
# (nothing more is released), or the stream ended (`released` is the held tail).
DELTA, BLOCKED, END = "delta", "blocked", "end"


@dataclass(frozen=True)
class StreamEvent:
    """One step of a guarded stream: the model's delta and the text now safe to release."""

    kind: str
    delta: str = ""
    released: str = ""


def guarded_deltas(session: GuardSession, deltas: Iterator[str | tuple[str, Any]],
                   stop: Callable[[], bool] = lambda: False,
                   scoring: Callable[[str], AbstractContextManager[Any]] = lambda _: nullcontext()
                   ) -> Iterator[StreamEvent]:
    """The one guarded streaming loop, after `session.check_input()` passed: each model
    delta through the output layer, then exactly one BLOCKED or END event (END carries the
    held tail). Every server streams through it: the gateway and the challenge page in a
    worker thread (`serve.guarded`), the red team and evaluations in-process
    (`GuardedChatModel`).

    `stop()` is asked before each delta (a client went away: the model is not pulled
    further and no end event comes); `scoring(layer)` wraps each classifier call, so a
    watchdog can fail the stream closed when one overruns. A model failure is recorded in
    the session and raised; the model's stream is closed whatever happens.
    """
    try:
        for item in deltas:
            if stop():
                return
            if isinstance(item, tuple):  # Guard.model_stream's hidden-state steps
                delta, hidden = item
                with scoring("output"):
                    out = session.push_hidden(delta, hidden)
                if not (delta or out or session.decision.blocked):
                    continue
            elif not item:
                continue
            else:
                delta = item
                with scoring("output"):
                    out = session.push(delta)
            if session.decision.blocked:
                session.finish()
                yield StreamEvent(BLOCKED, delta)
                return
            yield StreamEvent(DELTA, delta, out)
        tail = session.finish()
        if session.decision.blocked:  # the last chunk, read at the end, crossed the line
            yield StreamEvent(BLOCKED)
            return
        yield StreamEvent(END, released=tail)
    except Exception as e:
        session.fail(e)
        raise
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


class GuardedChatModel:
    """A ChatModel behind a guard: blocked replies become the guard's refusal text.

    `last_decision` holds the decision about the most recent reply made by the calling
    thread (per call of `generate`, `stream`, or each item of `generate_batch` in
    `last_decisions`), so concurrent callers never read each other's decisions;
    `generate_with_decision` returns both at once.
    """

    def __init__(self, model: ChatModel, guard: Guard, name: str | None = None) -> None:
        self.model = model
        self.guard = guard
        layers = "+".join(guard.layers)
        self.name = name or (f"{model.name}+{layers}" if layers else model.name)
        self._local = threading.local()

    @property
    def last_decision(self) -> Decision | None:
        return getattr(self._local, "decision", None)

    @last_decision.setter
    def last_decision(self, decision: Decision | None) -> None:
        self._local.decision = decision

    @property
    def last_decisions(self) -> list[Decision]:
        return getattr(self._local, "decisions", [])

    @last_decisions.setter
    def last_decisions(self, decisions: list[Decision]) -> None:
        self._local.decisions = decisions

    def generate_with_decision(self, conversation: ConversationLike,
                               params: GenerationParams | None = None
                               ) -> tuple[Message, Decision]:
        message = self.generate(conversation, params)
        decision = self.last_decision
        assert decision is not None
        return message, decision

    def stream(self, conversation: ConversationLike,
               params: GenerationParams | None = None) -> Iterator[str]:
        session = self.guard.session(conversation)
        self.last_decision = session.decision
        if not session.check_input():
            session.finish()
            yield self.guard.refusal
            return
        yield from self.guard.guard_stream(
            session, self.guard.model_stream(self.model, conversation, params))
        if session.decision.blocked:
            yield self.guard.refusal

    def generate(self, conversation: ConversationLike,
                 params: GenerationParams | None = None) -> Message:
        return Message("assistant", "".join(self.stream(conversation, params)))

    def generate_batch(self, conversations: Sequence[ConversationLike],
                       params: GenerationParams | None = None) -> list[Message]:
        """Input layer first for all; one batched model call for those that pass; then
        each reply goes through the output layer as a stream of model-sized pieces."""
        sessions = [self.guard.session(c) for c in conversations]
        passed = [i for i, s in enumerate(sessions) if s.check_input()]
        passed_set = set(passed)
        replies = [self.guard.refusal] * len(conversations)
        if passed:
            try:
                outs = self.model.generate_batch([conversations[i] for i in passed], params)
            except Exception as e:
                for i in passed:
                    sessions[i].fail(e)
                raise
            for i, msg in zip(passed, outs, strict=True):
                s = sessions[i]
                chunk = max(1, self.guard.bundle.stream_chunk_chars if self.guard.bundle else 4)
                text = msg.content
                pieces = (text[j:j + chunk] for j in range(0, len(text), chunk))
                released = "".join(self.guard.guard_stream(s, pieces))
                replies[i] = self.guard.refusal if s.decision.blocked else released
        for i, s in enumerate(sessions):
            if i not in passed_set:
                s.finish()
        self.last_decisions = [s.decision for s in sessions]
        self.last_decision = self.last_decisions[-1] if sessions else None
        return [Message("assistant", r) for r in replies]


def decision_summary(decisions: Sequence[Decision]) -> Mapping[str, int]:
    """How many replies each layer blocked (for reports)."""
    out = {"passed": 0, "input": 0, "output": 0, "error": 0}
    for d in decisions:
        out[d.layer if d.blocked and d.layer else "passed"] += 1
    return out
