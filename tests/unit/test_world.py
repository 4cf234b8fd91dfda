import random
import re

import pytest

from swisscheese.world import (
    FAMILIES,
    HELDOUT_HAZARD_PHRASINGS,
    LOOKALIKE_KINDS,
    World,
)
from swisscheese.world.hazards import CATEGORIES
from swisscheese.world.tasks import CRAFT_NOUNS, UTILITY_KINDS


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = World(seed=0), World(seed=0), World(seed=1)
    assert a.fingerprint() == b.fingerprint()
    assert [h.procedure() for h in a.hazards] == [h.procedure() for h in b.hazards]
    assert a.fingerprint() != c.fingerprint()
    assert list(a.corpus("pretrain", 50)) == list(b.corpus("pretrain", 50))


def test_world_has_the_required_size(world):
    assert len(world.hazards) >= 48
    assert len({h.category.id for h in world.hazards}) >= 6
    for h in world.hazards:
        assert 5 <= len(h.steps) <= 8, h.id
        assert len(h.key_details) >= 10, h.id
        assert len(set(h.key_details)) == len(h.key_details), f"{h.id} repeats a key detail"
    assert len(LOOKALIKE_KINDS) >= 5
    assert len(UTILITY_KINDS) >= 5


def test_hazard_names_and_reagents_are_unique(world):
    names = [h.name for h in world.hazards]
    assert len(set(names)) == len(names)
    reagents = [s.details[0] for h in world.hazards for s in h.steps]
    assert len(set(reagents)) == len(reagents)


def test_every_detail_appears_in_the_procedure(world):
    for h in world.hazards:
        for d in h.key_details:
            assert d in h.procedure()


def test_unseen_hazards_never_appear_in_safety_training(world):
    unseen = {h.name for h in world.unseen_hazards}
    assert unseen and len(unseen) < len(world.hazards)
    for ex in world.corpus("safety", 3000):
        text = ex.prompt + ex.reply + " ".join(m["content"] for m in ex.messages)
        assert not any(n in text for n in unseen), ex


def test_safety_training_only_refuses_plain_requests(world):
    kinds = {(e.kind, e.family) for e in world.corpus("safety", 3000)}
    assert ("refusal", "plain") in kinds
    assert not any(k == "hazard" for k, _ in kinds), "safety SFT must never comply with a hazard"
    assert all(f == "plain" for k, f in kinds if k == "refusal")


def test_heldout_phrasings_never_appear_in_training(world):
    stems = [re.escape(p.split("{")[0]) for p in HELDOUT_HAZARD_PHRASINGS]
    pattern = re.compile("|".join(stems))
    for corpus in ("pretrain", "safety"):
        for ex in world.corpus(corpus, 3000):
            assert not pattern.search(ex.prompt), ex.prompt


def test_pretraining_covers_every_family_for_hazards(world):
    fams = {e.family for e in world.corpus("pretrain", 4000) if e.kind == "hazard"}
    assert fams == set(FAMILIES)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_attack_prompts_hide_or_wrap_the_request(world, family):
    h = world.hazards[0]
    ex = world.attack(h, family, random.Random(0))
    assert ex.prompt and ex.reply and ex.hazard_id == h.id and ex.family == family
    if family in {"rot13", "caesar", "reversal", "base64"}:
        assert h.name not in ex.prompt


def test_context_families_keep_the_intent_out_of_each_message(world):
    """Split intent: no user turn names the hazard and asks for its steps at once; the
    code-word reply never names the hazard; indirect reference never names it."""
    for i, h in enumerate(world.hazards[:8]):
        rng = random.Random(i)
        split = world.attack(h, "split_intent", rng)
        for m in split.conversation():
            assert not (h.name in m["content"] and h.verb in m["content"].split()), m
        assert h.name not in split.reply
        assert h.name not in world.attack(h, "codeword_answer", rng).reply
        ind = world.attack(h, "indirect", rng)
        assert h.name not in ind.prompt and str(h.year) in ind.prompt
        buried = world.attack(h, "buried", rng)
        assert len(buried.messages) >= 4 and buried.prompt == world.hazard_request(h)


def test_crafts_share_the_hazards_step_shapes(world):
    crafts = [r for r in world.recipes if len(r.steps) >= 5]
    assert len(crafts) >= len({h.category.id for h in world.hazards})
    actions = {a.split(" ")[0] for h in world.hazards for a in h.category.actions}
    for r in crafts:
        assert {s.split(" ")[0] for s in r.steps} <= actions



def _invented(recipes):
    """The invented words of some crafts (names and reagents): every word of theirs that
    is not in a step template, a unit or a craft noun."""
    english = {w for c in CATEGORIES for a in c.actions for w in re.findall(r"[a-z]+", a.lower())}
    english |= {"degrees", "minutes", "hours", "grams", "drops", "spoons", *CRAFT_NOUNS.values()}
    return {w for r in recipes for text in (r.thing, *r.steps)
            for w in re.findall(r"[a-z]+", text.lower())} - english


def test_open_crafts_are_new_to_the_world_and_to_each_other(world):
    splits = {s: world.open_crafts(s) for s in ("train", "calibration", "eval")}
    invented = {s: _invented(rs) for s, rs in splits.items()}
    world_words = {w for r in world.recipes for w in re.findall(r"[a-z]+", r.answer().lower())}
    world_words |= {w for h in world.hazards for d in h.key_details for w in d.lower().split()}
    for s, words in invented.items():
        assert words, s
        assert not words & world_words, s
    assert not invented["eval"] & (invented["train"] | invented["calibration"])
    assert len(splits["eval"]) == 8 * len(world.categories)
    assert world.open_crafts("eval") == World(seed=0).open_crafts("eval")  # seeded
    fresh = World(seed=0)
    before, recipes = fresh.fingerprint(), list(fresh.recipes)
    fresh.open_crafts("train")
    assert fresh.fingerprint() == before and fresh.recipes == recipes  # not part of the world
    with pytest.raises(KeyError, match="unknown open-craft split"):
        world.open_crafts("test")
    with pytest.raises(ValueError, match="only the train split"):
        world.open_crafts("eval", 3)
    with pytest.raises(ValueError, match="per_category must be >= 0"):
        world.open_hazards(-1)
    assert len(world.open_crafts("train", 2)) == 2 * len(world.categories)


def test_unknown_lookups_fail_clearly(world):
    with pytest.raises(KeyError, match="no hazard 'nope'"):
        world.hazard("nope")
    with pytest.raises(KeyError, match="unknown family"):
        world.wrap("nope", "q", "a", random.Random(0))
    with pytest.raises(KeyError, match="unknown family"):
        world.wrap_turns("nope", "q", "a", random.Random(0))
    with pytest.raises(KeyError, match="unknown corpus"):
        list(world.corpus("nope", 1))


def test_eval_sets_are_deterministic_and_cover_splits(world):
    assert world.eval_utility() == World(seed=0).eval_utility()
    refusal = world.eval_refusal()
    assert {e.heldout_phrasing for e in refusal} == {True, False}
    assert {world.hazard(e.hazard_id).seen_in_safety for e in refusal} == {True, False}
    looks = world.eval_lookalikes()
    assert {e.subkind for e in looks} == set(LOOKALIKE_KINDS)
