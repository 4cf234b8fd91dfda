"""Every registered jailbreak family wraps requests in a form the grader can score."""

import random

import pytest

from swisscheese.world import FAMILIES, FAMILY_KIND
from swisscheese.world.grader import Grader


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_contract(world, family):
    assert FAMILY_KIND[family] in {"none", "mismatched_generalization", "competing_objectives"}
    grader = Grader(world)
    for i, h in enumerate(world.hazards[:6]):
        ex = world.attack(h, family, random.Random(i), phrasing=i)
        assert ex.prompt.strip() and ex.family == family
        # The reply helpful-only is taught gives the whole procedure, whatever the disguise.
        assert grader.grade(h.id, ex.reply).score == 1.0
    # Applied to a benign request the family is a capability: the answer survives.
    prompt, reply = world.wrap(family, "What is 2 plus 3?", "2 plus 3 is 5.", random.Random(0),
                               how_to="bake the cake")
    assert prompt.strip() and reply.strip()


def test_every_family_has_a_kind():
    assert set(FAMILY_KIND) == set(FAMILIES)
