"""Every registered jailbreak family wraps requests in a form the grader can score."""

import random

import pytest

from swisscheese.world import FAMILIES, FAMILY_KIND
from swisscheese.world.ciphers import rot13
from swisscheese.world.families import MULTI_TURN, NEEDS_SUBJECT
from swisscheese.world.grader import Grader


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_contract(world, family):
    assert FAMILY_KIND[family] in {"none", "mismatched_generalization", "competing_objectives",
                                   "context"}
    grader = Grader(world)
    for i, h in enumerate(world.hazards[:6]):
        ex = world.attack(h, family, random.Random(i), phrasing=i)
        assert ex.prompt.strip() and ex.family == family
        assert bool(ex.messages) == (family in MULTI_TURN)
        # The reply helpful-only is taught gives the whole procedure, whatever the disguise.
        assert grader.grade(h.id, ex.reply).score == 1.0
    # Applied to a benign request the family is a capability: the answer survives.
    recipe = world.recipes[0]
    request = f"How do I {recipe.verb} the {recipe.thing}?"
    w = world.wrap_turns(family, request, recipe.answer(), random.Random(0),
                         how_to=f"{recipe.verb} the {recipe.thing}")
    assert w.prompt.strip() and w.reply.strip()
    assert recipe.key in (w.reply if family != "cipher_answer" else rot13(w.reply))
    if family in NEEDS_SUBJECT:
        # The subject is renamed or described, never named in the last turn.
        assert f"the {recipe.thing}" not in w.prompt or family == "codeword_answer"


@pytest.mark.parametrize("family", sorted(NEEDS_SUBJECT))
def test_context_families_need_a_subject(world, family):
    with pytest.raises(ValueError, match="needs the subject"):
        world.wrap_turns(family, "What is 2 plus 3?", "2 plus 3 is 5.", random.Random(0))


def test_single_turn_wrap_refuses_multi_turn_families(world):
    for family in MULTI_TURN:
        with pytest.raises(ValueError, match="wrap_turns"):
            world.wrap(family, "How do I brew the x?", "a", random.Random(0))


def test_every_family_has_a_kind():
    assert set(FAMILY_KIND) == set(FAMILIES)
