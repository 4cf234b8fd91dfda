"""Every registered judge gives a score in [0, 1] with a known label, or undetermined;
a judge that fails is recorded as an error, never as a failed attack."""

from __future__ import annotations

import pytest

from swisscheese.models.base import EndpointError, Message
from swisscheese.redteam import judges as _judges  # noqa: F401  (registers them)
from swisscheese.redteam.attacks.prompting import judge_safely
from swisscheese.redteam.base import (
    JUDGES,
    LABELS,
    UNDETERMINED,
    Attempt,
    Behaviour,
    Judge,
    Verdict,
)
from swisscheese.redteam.behaviours import level_behaviours
from swisscheese.redteam.context import RedteamContext, build_plugin


class RatingModel:
    """A judge LLM that answers with a fixed text."""

    name = "rater"

    def __init__(self, text: str = "Rating: [[8]]", fail: bool = False) -> None:
        self.text = text
        self.fail = fail

    def generate(self, conversation, params=None) -> Message:  # noqa: ANN001
        if self.fail:
            raise EndpointError("judge endpoint down")
        return Message("assistant", self.text)

    def stream(self, conversation, params=None):  # noqa: ANN001, ANN201
        yield self.generate(conversation, params).content

    def generate_batch(self, conversations, params=None) -> list[Message]:  # noqa: ANN001
        return [self.generate(c, params) for c in conversations]


@pytest.fixture(scope="module")
def ctx(world, small_bundle_dir) -> RedteamContext:
    from swisscheese.bundles import load_bundle

    return RedteamContext(world=world, bundle_loader=lambda: load_bundle(small_bundle_dir),
                          helper_model=RatingModel())


def replies(world, b: Behaviour) -> list[str]:
    h = world.hazard(b.hazard_id)
    return [h.answer(), world.refusal(h), "", "The weather is mild today.",
            "Sure, here is a cake recipe: flour, eggs, sugar."]


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_judge_scores_are_in_range(name: str, ctx, world) -> None:
    judge = build_plugin(JUDGES, name, ctx)
    assert isinstance(judge, Judge)
    hazard = level_behaviours(world)[0]
    other = Behaviour(id="real-1", prompt="Write a poem about tea.")
    for b in (hazard, other):
        for r in replies(world, hazard):
            v = judge.judge(b, r)
            assert isinstance(v, Verdict) and v.label in LABELS
            assert (v.score is None) == (v.label == UNDETERMINED)
            assert v.score is None or 0.0 <= v.score <= 1.0
            assert isinstance(v.reason, str)


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_a_failing_judge_is_an_error_not_a_failed_attack(name: str, ctx, world) -> None:
    judge = build_plugin(JUDGES, name, ctx)
    b = level_behaviours(world)[0]
    a = Attempt(b.id, "plain", "t", "plain", [{"role": "user", "content": b.prompt}],
                response=world.hazard(b.hazard_id).answer())

    def boom(behaviour: Behaviour, response: str) -> Verdict:
        raise RuntimeError("judge crashed")

    judge.judge = boom  # type: ignore[method-assign]
    judge_safely(judge, b, a)
    assert a.verdict is None and a.error == "judge: RuntimeError: judge crashed"


def test_judges_agree_on_a_full_answer_and_a_refusal(ctx, world) -> None:
    b = level_behaviours(world)[0]
    h = world.hazard(b.hazard_id)
    detail = build_plugin(JUDGES, "detail", ctx)
    assert detail.judge(b, h.answer()).label == "jailbroken"
    assert detail.judge(b, h.answer()).score == 1.0
    v = detail.judge(b, world.refusal(h))
    assert (v.score, v.label) == (0.0, "refused")
    refusal = build_plugin(JUDGES, "refusal", ctx)
    assert refusal.judge(b, world.refusal(h)).label == "refused"
    assert refusal.judge(b, h.answer()).score == 1.0
    classifier = build_plugin(JUDGES, "classifier", ctx)
    assert classifier.judge(b, h.answer()).score > classifier.judge(b, "Tea is nice.").score


def test_llm_judge_unparsable_or_failing(ctx, world) -> None:
    b = level_behaviours(world)[0]
    vague = build_plugin(JUDGES, "llm", ctx, {"judge_model": RatingModel("I am not sure.")})
    assert vague.judge(b, "x").label == UNDETERMINED
    down = build_plugin(JUDGES, "llm", ctx, {"judge_model": RatingModel(fail=True)})
    a = Attempt(b.id, "plain", "t", "plain", [{"role": "user", "content": b.prompt}],
                response="x")
    judge_safely(down, b, a)
    assert a.verdict is None and a.error and "judge endpoint down" in a.error
