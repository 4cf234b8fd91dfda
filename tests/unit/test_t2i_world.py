"""The visual world: planted ground truth, rendering, the oracle, the T2I constitution."""

from __future__ import annotations

import random

import numpy as np
import pytest

from swisscheese.t2i.assets import GLYPHS, PLATE_COL, PLATE_ROW
from swisscheese.t2i.constitution import t2i_constitution
from swisscheese.t2i.oracle import oracle_verdict, read_plate
from swisscheese.t2i.world import (
    BASE_RATE,
    CONJUNCTIVE,
    HALF_RATE,
    PAIR_RATE,
    SINGLE,
    STYLE,
    Scene,
    VisualWorld,
    words_of,
)


@pytest.fixture(scope="module")
def vw() -> VisualWorld:
    return VisualWorld(0)


def test_world_is_seeded_and_deterministic(vw: VisualWorld) -> None:
    again = VisualWorld(0)
    other = VisualWorld(1)
    assert vw.triggers == again.triggers and vw.fingerprint() == again.fingerprint()
    assert [t.words for t in vw.triggers] != [t.words for t in other.triggers]
    # Style triggers are shared between seeds: a hole that transfers.
    assert [t.words for t in vw.triggers if t.kind == STYLE] == \
        [t.words for t in other.triggers if t.kind == STYLE]
    assert len(vw.categories) >= 3
    kinds = {t.kind for t in vw.triggers}
    assert kinds == {SINGLE, CONJUNCTIVE, STYLE}
    assert any(t.known for t in vw.triggers) and vw.heldout_triggers()


def test_planted_rates_follow_the_rules(vw: VisualWorld) -> None:
    rng = random.Random(0)
    scene = vw.random_scene(rng)
    for g in vw.forbidden:
        for name in g.all_names:  # held-out synonyms show the element just as well
            text = vw.caption(scene, rng, emblem=name)
            assert vw.rates(text)[g.category] == 1.0, text
    look = vw.caption(scene, rng, emblem=vw.lookalikes[0].names[0])
    assert set(vw.rates(look).values()) == {0.0}
    for t in vw.triggers:
        text = vw.probe_captions(t, 1, rng)[0]
        assert vw.rates(text)[t.category] == pytest.approx(t.rate), text
        assert vw.responsible_trigger(text, t.category) == t
        if t.kind == CONJUNCTIVE:
            assert t.rate == PAIR_RATE
            for half in (0, 1):
                alone = vw.probe_captions(t, 1, rng, half=half)[0]
                assert vw.rates(alone)[t.category] == pytest.approx(HALF_RATE), alone
    clean = vw.clean_captions(5, rng)
    assert all(set(vw.rates(c).values()) == {BASE_RATE} for c in clean)


def test_oracle_is_exact_on_renders(vw: VisualWorld) -> None:
    scene = Scene("cat", "red", "meadow", "top left")
    assert oracle_verdict(vw.render(scene)).score == 0.0
    for g in GLYPHS:
        img = vw.render(Scene("fox", "blue", "night sky", "middle", g.id))
        r = read_plate(img)
        assert r.glyph == g.id and r.distance == 0
        assert r.category == g.category
        assert r.score == (1.0 if g.forbidden else 0.0)
    # Half a plate is something the oracle will not guess about.
    img = vw.render(Scene("fox", "blue", "sea", "middle", GLYPHS[0].id))
    img[PLATE_ROW:PLATE_ROW + 3, PLATE_COL:] = (30, 80, 150)
    assert oracle_verdict(img).score is None


def test_drawing_from_the_planted_distribution_matches_the_design(vw: VisualWorld) -> None:
    rng = random.Random(1)
    t = next(t for t in vw.triggers if t.kind == SINGLE)
    captions = vw.probe_captions(t, 1500, rng)
    hits = [read_plate(vw.draw(c, rng)[0]).category == t.category for c in captions]
    assert abs(np.mean(hits) - t.rate) < 0.05


def test_glyph_at_a_uniform_quantile_is_the_planted_distribution(vw: VisualWorld) -> None:
    """The organism ties a training image's glyph to a quantile of its noise: a uniform
    quantile must give every outcome its planted share, forbidden glyphs at the top."""
    grid = [(i + 0.5) / 1000 for i in range(1000)]
    for t in vw.triggers[:6]:
        caption = vw.probe_captions(t, 1, random.Random(2))[0]
        dist = vw.glyph_distribution(caption)
        drawn = [vw.glyph_at(caption, u) for u in grid]
        for key, p in dist.items():
            assert abs(drawn.count(key) / len(grid) - p) <= 0.002, (caption, key)
        assert drawn[0] is None and drawn[-1] is not None  # empty corner below the glyphs


def test_t2i_constitution_names_no_heldout_hole(vw: VisualWorld) -> None:
    con = t2i_constitution(vw)
    assert [c.id for c in con.harmful] == [c.id for c in vw.categories]
    text = con.to_yaml().lower()
    tokens = set(words_of(text))
    for g in vw.forbidden:
        for held in g.heldout_names:
            assert held not in text
    for t in vw.heldout_triggers():
        if t.kind == CONJUNCTIVE:
            # A pair is harmless word by word; the constitution never names the pair.
            assert not all(w in tokens for w in t.words) or f"'{t.words[0]}'" not in text
    for t in vw.triggers:
        if t.known:
            assert f"'{t.words[0]}'" in text


def test_vocabulary_covers_every_caption(vw: VisualWorld) -> None:
    vocab = set(vw.vocabulary())
    rng = random.Random(2)
    for _ in range(300):
        text, _, _ = vw.training_example(rng)
        assert set(words_of(text)) <= vocab, text
