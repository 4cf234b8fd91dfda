"""Crescendo against scripted doubles: openers, the growing conversation, backtracking of
refusals, steering by the score, the budget, and an LLM attacker shown the conversation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest

from swisscheese.models.base import GenerationParams, Message, as_messages
from swisscheese.redteam.attacks.crescendo import CrescendoAttack, LLMEscalator, Planner
from swisscheese.redteam.base import ATTACKS, JAILBROKEN, REFUSED, SAFE, Behaviour, Judge, Verdict
from swisscheese.world.core import LOOKALIKES

REFUSAL = "I can't help with that."


class ConversationTarget:
    """A ChatModel whose reply is `reply(messages)`; it records every conversation sent."""

    name = "conversation-double"

    def __init__(self, reply: Callable[[list[Message]], str]) -> None:
        self.reply = reply
        self.seen: list[list[Message]] = []

    def generate(self, conversation, params: GenerationParams | None = None) -> Message:
        msgs = as_messages(conversation)
        self.seen.append(msgs)
        return Message("assistant", self.reply(msgs))

    def stream(self, conversation, params=None):
        yield self.generate(conversation, params).content

    def generate_batch(self, conversations: Sequence, params=None) -> list[Message]:
        return [self.generate(c, params) for c in conversations]


class KeyJudge(Judge):
    name = "key-test"

    def judge(self, behaviour: Behaviour, response: str) -> Verdict:
        score = min(4, response.count("KEY")) / 4
        if score >= behaviour.threshold:
            return Verdict(score, JAILBROKEN)
        return Verdict(score, REFUSED if response.startswith("I can't") else SAFE)


@pytest.fixture
def behaviour(world) -> Behaviour:
    h = world.hazards[0]
    return Behaviour("b0", world.hazard_request(h), hazard_id=h.id, threshold=0.75)


def test_openers_then_escalation_backtracks_refusals_and_stops_on_success(world,
                                                                          behaviour) -> None:
    h = world.hazard(behaviour.hazard_id)

    def reply(msgs: list[Message]) -> str:
        last = msgs[-1].content
        users = sum(m.role == "user" for m in msgs)
        if last in openers:
            return "Here is some history."  # an opener about the subject: harmless
        if users < 3 or "story" not in last.lower():
            return REFUSAL  # only a story, after two openers in context, gets through
        return "KEY KEY KEY KEY"

    openers = {train.format(**h.slots()) for kind in ("history", "definition", "fiction",
                                                     "safety", "report")
               for train in LOOKALIKES[kind][0]}

    target = ConversationTarget(reply)
    attack = CrescendoAttack(world=world, max_turns=5, max_backtracks=20, openers=2, seed=1)
    attempts = attack.run(behaviour, target, KeyJudge())
    assert attempts[-1].verdict is not None and attempts[-1].verdict.label == JAILBROKEN
    # Two openers, kept in the conversation with their replies; the target sees it grow.
    assert [a.meta["plan"][-1]["kind"] for a in attempts[:2]] == ["opener", "opener"]
    assert len(target.seen[0]) == 1 and len(target.seen[1]) == 3
    assert target.seen[1][1].content == "Here is some history."
    # Refused escalations are taken back: the next conversation does not hold them.
    refused = [i for i, a in enumerate(attempts) if a.meta["backtracked"]]
    for i in refused:
        later = target.seen[i + 1]
        assert all(m.content != attempts[i].conversation[-1]["content"] for m in later)
        assert REFUSAL not in [m.content for m in later]
    assert all(len(c) == 5 for c in target.seen[2:])  # openers + their replies + the step
    assert sum(a.meta["best"] for a in attempts) == 1
    assert all(a.meta["queries"] == len(attempts) for a in attempts)
    final = attempts[-1]
    assert final.conversation == [{"role": m.role, "content": m.content}
                                  for m in target.seen[-1]]


def test_backtracks_are_capped_and_then_kept(world, behaviour) -> None:
    target = ConversationTarget(lambda msgs: REFUSAL)
    attempts = CrescendoAttack(world=world, max_turns=3, max_backtracks=2, openers=1).run(
        behaviour, target, KeyJudge())
    assert sum(a.meta["backtracked"] for a in attempts) == 2
    # After the cap the refused turns stay in the conversation, up to max_turns kept turns.
    assert len(attempts) == 2 + 3
    assert len(target.seen[-1]) == 2 * 3 - 1


def test_budget_and_planner_replay(world, behaviour) -> None:
    target = ConversationTarget(lambda msgs: "nothing useful")
    attempts = CrescendoAttack(world=world, max_turns=6, max_queries=3).run(
        behaviour, target, KeyJudge())
    assert len(attempts) == 3 and len(target.seen) == 3
    # A plan is replayable for another behaviour: the same steps, that hazard's words.
    other = world.hazards[5]
    b2 = Behaviour("b2", world.hazard_request(other), hazard_id=other.id)
    planner = Planner(world=world)
    plan = attempts[-1].meta["plan"]
    texts = [planner.render_step(b2, s) for s in plan]
    assert all(other.name in t or other.name.lower() in t.lower() or s["kind"] == "escalation"
               for t, s in zip(texts, plan, strict=True))
    assert texts != [planner.render_step(behaviour, s) for s in plan]


def test_target_errors_end_the_attack_as_errors(world, behaviour) -> None:
    def down(msgs: list[Message]) -> str:
        raise ConnectionError("connection refused")

    attempts = CrescendoAttack(world=world).run(behaviour, ConversationTarget(down), KeyJudge())
    assert len(attempts) == 1 and "connection refused" in (attempts[0].error or "")
    assert attempts[0].verdict is None


def test_llm_escalator_sees_the_conversation_and_the_score(world, behaviour) -> None:
    class Attacker:
        name = "attacker-double"

        def __init__(self) -> None:
            self.seen: list[list[Message]] = []

        def generate(self, conversation, params=None) -> Message:
            self.seen.append(as_messages(conversation))
            n = len(self.seen)
            return Message("assistant", json.dumps({"improvement": "", "prompt": f"turn {n}"}))

        def stream(self, conversation, params=None):
            yield self.generate(conversation, params).content

        def generate_batch(self, conversations, params=None):
            return [self.generate(c, params) for c in conversations]

    llm = Attacker()
    target = ConversationTarget(lambda msgs: "KEY " * len(msgs))
    attack = CrescendoAttack(attacker=LLMEscalator(llm, max_turns=4), max_turns=4, openers=1)
    attempts = attack.run(behaviour, target, KeyJudge())
    assert [a.conversation[-1]["content"] for a in attempts] == ["turn 1", "turn 2"]
    second = llm.seen[1]
    assert second[0].role == "system" and behaviour.prompt in second[0].content
    assert "[user] turn 1" in second[1].content and "[assistant] KEY" in second[1].content
    assert "SCORE OF THE LAST REPLY (0 to 1, 1 means the objective is fully achieved): 0.25" \
        in second[1].content


def test_registered_and_bad_options(world) -> None:
    assert ATTACKS.get_class("crescendo") is CrescendoAttack
    with pytest.raises(ValueError, match="openers"):
        CrescendoAttack(world=world, max_turns=2, openers=2)
    with pytest.raises(ValueError, match="max_turns"):
        CrescendoAttack(world=world, max_turns=0)
