"""The layered guard with a real (small) guard bundle and a scripted model.

The model is a test double: it replays fixed deltas, so each test controls exactly what
the output layer sees and can check that the guard stops pulling once it blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from swisscheese.bundles import GuardBundle, load_bundle
from swisscheese.guard.normalize import normalize_text
from swisscheese.guard.pipeline import Guard, GuardedChatModel, decision_summary
from swisscheese.models.base import EndpointError, Message


class ScriptedModel:
    """Streams a fixed reply in fixed-size pieces and counts how many it handed out."""

    name = "scripted"

    def __init__(self, reply: str, piece: int = 3, fail_after: int | None = None) -> None:
        self.reply = reply
        self.piece = piece
        self.fail_after = fail_after
        self.pulled = 0
        self.calls = 0

    def stream(self, conversation, params=None) -> Iterator[str]:
        self.calls += 1
        for i in range(0, len(self.reply), self.piece):
            if self.fail_after is not None and self.pulled >= self.fail_after:
                raise EndpointError("upstream went away")
            self.pulled += 1
            yield self.reply[i:i + self.piece]

    def generate(self, conversation, params=None) -> Message:
        return Message("assistant", "".join(self.stream(conversation, params)))

    def generate_batch(self, conversations, params=None) -> list[Message]:
        return [self.generate(c, params) for c in conversations]


class Exploding:
    """A classifier part that fails, to check that the guard fails closed."""

    def predict_proba(self, texts):
        raise RuntimeError("classifier crashed")

    def start(self, conversation=None):
        raise RuntimeError("classifier crashed")


@pytest.fixture(scope="module")
def bundle(small_bundle_dir: Path) -> GuardBundle:
    return load_bundle(small_bundle_dir)


@pytest.fixture(scope="module")
def hazard(world):
    return world.seen_hazards[0]


@pytest.fixture(scope="module")
def flagged_request(bundle: GuardBundle, world) -> str:
    """A plain hazard request that the small bundle's input layer flags."""
    requests = [world.hazard_request(h, p) for h in world.seen_hazards for p in range(4)]
    scores = bundle.input_scores(requests)
    flagged = [r for r, s in zip(requests, scores, strict=True) if bundle.flag_input(s)]
    assert len(flagged) > len(requests) // 2, "the small bundle should flag most requests"
    return flagged[0]


BENIGN_REPLY = "Two plus three is five. Anything else I can add up for you today?"


def test_benign_reply_passes_whole(bundle: GuardBundle) -> None:
    model = ScriptedModel(BENIGN_REPLY)
    guarded = GuardedChatModel(model, Guard(bundle))
    assert guarded.generate("What is 2 + 3?").content == BENIGN_REPLY
    d = guarded.last_decision
    assert d is not None and not d.blocked and d.layer is None
    assert d.released_chars == len(BENIGN_REPLY)
    assert d.bundle_version == bundle.version
    assert set(d.latency_ms) >= {"input", "first_token", "output", "total"}


def test_input_layer_blocks_before_the_model_runs(bundle, hazard, flagged_request) -> None:
    model = ScriptedModel(hazard.answer())
    guarded = GuardedChatModel(model, Guard(bundle, refusal="No."))
    assert guarded.generate(flagged_request).content == "No."
    assert guarded.last_decision.layer == "input"
    assert model.calls == 0


def test_output_layer_stops_the_stream_and_releases_only_a_prefix(bundle, world, hazard) -> None:
    answer = hazard.answer() * 3
    model = ScriptedModel(answer)
    guard = Guard(bundle, input_layer=False, hold_back=16)
    session = guard.session("What is 2 + 3?")
    assert session.check_input()
    released = "".join(guard.guard_stream(session, model.stream("x")))
    d = session.decision
    assert d.blocked and d.layer == "output"
    assert answer.startswith(released)
    assert len(released) < len(hazard.answer())
    assert model.pulled < -(-len(answer) // model.piece), "kept pulling after the block"
    assert d.output_score >= bundle.thresholds["output"]


def test_hold_back_window_is_respected_after_every_delta(bundle: GuardBundle) -> None:
    guard = Guard(bundle, input_layer=False, hold_back=10)
    session = guard.session("hi")
    session.check_input()
    received = released = 0
    for i in range(0, len(BENIGN_REPLY), 4):
        delta = BENIGN_REPLY[i:i + 4]
        received += len(delta)
        released += len(session.push(delta))
        assert released <= max(0, received - 10)
    released += len(session.finish())
    assert released == len(BENIGN_REPLY)


def test_disguised_input_is_normalised_before_scoring(bundle, flagged_request) -> None:
    plain = flagged_request
    hidden = "\u200b".join(plain)  # a zero-width space between every character
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in plain)
    assert normalize_text(hidden) == plain
    assert normalize_text(full_width) == plain
    guarded = GuardedChatModel(ScriptedModel("ok"), Guard(bundle))
    for text in (hidden, full_width):
        guarded.generate(text)
        assert guarded.last_decision.layer == "input"


@pytest.mark.parametrize("part", ["input", "output"])
def test_classifier_failure_fails_closed(bundle: GuardBundle, part: str) -> None:
    broken = replace(bundle, **{part: Exploding()})
    model = ScriptedModel(BENIGN_REPLY)
    guarded = GuardedChatModel(model, Guard(broken, refusal="Blocked."))
    assert guarded.generate("What is 2 + 3?").content == "Blocked."
    d = guarded.last_decision
    assert d.blocked and d.layer == "error" and "classifier crashed" in d.error
    assert model.calls == 0


def test_model_failure_is_recorded_and_raised(bundle: GuardBundle) -> None:
    guarded = GuardedChatModel(ScriptedModel(BENIGN_REPLY, fail_after=2), Guard(bundle))
    with pytest.raises(EndpointError):
        guarded.generate("What is 2 + 3?")
    d = guarded.last_decision
    assert not d.blocked and "upstream went away" in d.error


def test_batch_agrees_with_stream(bundle: GuardBundle, flagged_request) -> None:
    prompts = ["What is 2 + 3?", flagged_request]
    guarded = GuardedChatModel(ScriptedModel(BENIGN_REPLY), Guard(bundle))
    batch = [m.content for m in guarded.generate_batch(prompts)]
    assert batch == [guarded.generate(p).content for p in prompts]
    assert decision_summary(guarded.last_decisions) == {"passed": 1, "input": 1, "output": 0,
                                                         "error": 0}


def test_no_bundle_means_no_layers() -> None:
    guarded = GuardedChatModel(ScriptedModel(BENIGN_REPLY), Guard(None))
    assert guarded.name == "scripted"
    assert guarded.generate("hi").content == BENIGN_REPLY
    with pytest.raises(ValueError, match="hold_back"):
        Guard(None, hold_back=-1)


def test_decisions_are_per_thread(bundle: GuardBundle, flagged_request) -> None:
    import threading

    guarded = GuardedChatModel(ScriptedModel(BENIGN_REPLY), Guard(bundle))
    seen: dict[str, str | None] = {}

    def ask(key: str, prompt: str) -> None:
        _, decision = guarded.generate_with_decision(prompt)
        guarded.generate(prompt)
        seen[key] = guarded.last_decision.layer if guarded.last_decision else "missing"
        assert decision.layer == seen[key]

    threads = [threading.Thread(target=ask, args=(k, p))
               for k, p in (("benign", "What is 2 + 3?"), ("hazard", flagged_request))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"benign": None, "hazard": "input"}
    assert guarded.last_decision is None  # this thread made no call


def test_calm_release_sends_benign_text_at_once_and_still_stops_hazards(bundle, world,
                                                                         hazard) -> None:
    guard = Guard(bundle, input_layer=False, hold_back=32, calm_below=0.5)
    session = guard.session("What is 2 + 3?")
    session.check_input()
    first = session.push(BENIGN_REPLY[:4])
    assert first == BENIGN_REPLY[:4], "a calm stream is not held back"
    strict = Guard(bundle, input_layer=False, hold_back=32).session("What is 2 + 3?")
    strict.check_input()
    assert strict.push(BENIGN_REPLY[:4]) == ""

    model = ScriptedModel(hazard.answer())
    s = guard.session("hi")
    s.check_input()
    released = "".join(guard.guard_stream(s, model.stream("hi")))
    assert s.decision.layer == "output"
    assert len(released) < len(hazard.answer()) // 2
    with pytest.raises(ValueError, match="calm_below"):
        Guard(bundle, calm_below=1.5)
