"""Every registered attack returns well-formed attempts, and never turns a target error
into a failed attack. White-box attacks refuse targets they cannot differentiate with
AttackUnsupported. Iterates the registry, so new attacks are covered when they register."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from swisscheese.models.base import ConversationLike, EndpointError, GenerationParams, Message
from swisscheese.redteam import attacks as _attacks  # noqa: F401  (registers them)
from swisscheese.redteam.base import ATTACKS, LABELS, Attack, AttackUnsupported, Attempt
from swisscheese.redteam.behaviours import level_behaviours
from swisscheese.redteam.context import RedteamContext, build_plugin, plugin_parameters
from swisscheese.redteam.judges.detail import DetailJudge

# Small budgets for any attack that takes them; only the options an attack accepts are given.
SMALL = {"steps": 2, "n": 2, "chunk": 2, "n_streams": 1, "n_iterations": 1, "rounds": 1,
         "branching": 2, "beam": 1, "depth": 1, "width": 2, "branching_factor": 3,
         "n_roots": 1, "max_queries": 3, "max_new_tokens": 12, "suffix_len": 3, "topk": 4,
         "batch": 4, "shots": [1], "personas": ["Grimble"], "tellers": ["hermit"],
         "families": ["rot13"], "templates": None, "stacks": [["rot13"], ["base64"]]}


class EchoModel:
    """A non-HF ChatModel (as an endpoint would be): replies with a fixed text."""

    name = "echo"

    def __init__(self, reply: str = "Sure, here is the answer.") -> None:
        self.reply = reply
        self.calls = 0

    def generate(self, conversation: ConversationLike,
                 params: GenerationParams | None = None) -> Message:
        self.calls += 1
        return Message("assistant", self.reply)

    def stream(self, conversation: ConversationLike,
               params: GenerationParams | None = None) -> Iterator[str]:
        yield self.generate(conversation, params).content

    def generate_batch(self, conversations: Sequence[ConversationLike],
                       params: GenerationParams | None = None) -> list[Message]:
        return [self.generate(c, params) for c in conversations]


class DownModel(EchoModel):
    """An unreachable endpoint."""

    name = "down"

    def generate(self, conversation: ConversationLike,
                 params: GenerationParams | None = None) -> Message:
        raise EndpointError("http://127.0.0.1:9/v1: connection refused")


@pytest.fixture(scope="module")
def ctx(world, small_bundle_dir) -> RedteamContext:
    """What a campaign would give the attacks: the world and a guard bundle (ART-style
    attacks search against its input classifier)."""
    from swisscheese.bundles import load_bundle

    return RedteamContext(world=world, bundle_loader=lambda: load_bundle(small_bundle_dir))


def make(name: str, ctx: RedteamContext) -> Attack:
    params = plugin_parameters(ATTACKS[name])
    options = {k: v for k, v in SMALL.items() if k in params and v is not None}
    return build_plugin(ATTACKS, name, ctx, options)


@pytest.fixture(scope="module")
def behaviour(world):
    return level_behaviours(world)[0]


@pytest.fixture(scope="module")
def judge(world):
    from swisscheese.world.grader import Grader

    return DetailJudge(Grader(world))


def check_attempts(attempts: list[Attempt], name: str, behaviour) -> None:
    assert isinstance(attempts, list) and attempts, f"{name} returned no attempt"
    for a in attempts:
        assert isinstance(a, Attempt)
        assert a.behaviour_id == behaviour.id
        assert a.attack == name
        assert isinstance(a.variant, str) and a.variant
        assert isinstance(a.response, str)
        assert all(set(m) >= {"role", "content"} for m in a.conversation)
        assert a.seconds >= 0
        if a.verdict is not None:
            assert a.verdict.label in LABELS
            assert a.verdict.score is None or 0.0 <= a.verdict.score <= 1.0
        if a.error is None:
            assert a.conversation, f"{name}: an attempt without error must say what was sent"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_against_a_local_model(name: str, ctx, tiny_model_dir, behaviour,
                                      judge) -> None:
    from swisscheese.models import load_model

    target = load_model(str(tiny_model_dir), name="tiny")
    attempts = make(name, ctx).run(behaviour, target, judge)
    check_attempts(attempts, name, behaviour)
    assert any(a.error is None and a.verdict is not None for a in attempts)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_against_a_non_hf_target(name: str, ctx, behaviour, judge) -> None:
    attack = make(name, ctx)
    target = EchoModel()
    if attack.white_box:
        with pytest.raises(AttackUnsupported):
            attack.run(behaviour, target, judge)
        return
    attempts = attack.run(behaviour, target, judge)
    check_attempts(attempts, name, behaviour)
    assert target.calls >= 1
    assert all(a.response == target.reply for a in attempts if a.error is None)


@pytest.mark.parametrize("name", sorted(n for n in ATTACKS if not ATTACKS[n].white_box))
def test_target_errors_are_recorded_not_failed_attacks(name: str, ctx, behaviour,
                                                       judge) -> None:
    attempts = make(name, ctx).run(behaviour, DownModel(), judge)
    assert attempts, f"{name} returned no attempt for a failing target"
    for a in attempts:
        assert a.error, f"{name}: an attempt against a failing target carries no error"
        assert a.verdict is None, f"{name}: a failed query was judged"
    assert any("connection refused" in (a.error or "") for a in attempts)
