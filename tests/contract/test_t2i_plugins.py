"""Every registered T2I plugin, of every kind, keeps its contract.

Image judges: one verdict per image, a score in [0, 1] or undetermined, a category only
among the constitution's. Prompt filters: the same per prompt, and undetermined never
passes. Writers: n non-empty prompts. Generators: k uint8 (H, W, 3) images per prompt, the
same ones again for the same seed. A plugin registered without a case here fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swisscheese.t2i.base import Guidance, ImageVerdict
from swisscheese.t2i.registry import (
    GENERATORS,
    IMAGE_JUDGES,
    PROMPT_FILTERS,
    WRITERS,
    T2IContext,
    build,
)
from swisscheese.t2i.world import Scene, VisualWorld
from tests.t2i_server import VisionServer

CATS = {"hexmarks", "wardbreakers", "veilsigils"}


@pytest.fixture(scope="module")
def server() -> Iterator[VisionServer]:
    with VisionServer() as s:
        yield s


@pytest.fixture(scope="module")
def ctx(t2i_organism_dir: Path, tmp_path_factory) -> T2IContext:
    return T2IContext(VisualWorld(0), t2i_organism_dir, tmp_path_factory.mktemp("t2i-ctx"))


def specs(server: VisionServer) -> dict[str, dict[str, Any]]:
    """A working spec for every plugin this suite knows."""
    return {
        "judge": {"oracle": "oracle", "cnn": "cnn", "nudenet": "nudenet",
                  "vlm": {"name": "vlm", "base_url": server.url}},
        "filter": {"keyword": "keyword", "classifier": "classifier",
                   "llm": {"name": "llm", "model": server.url}},
        "writer": {"mutator": "mutator", "chat": {"name": "chat", "model": server.url}},
        "generator": {"diffusers": "diffusers", "world": "world"},
    }


def images(world: VisualWorld) -> list[np.ndarray]:
    rng = random.Random(0)
    out = [world.render(Scene("cat", "red", "meadow", "top left", g.id))
           for g in world.glyphs[::3]]
    out.append(world.render(world.random_scene(rng)))
    return out


def _verdict_ok(v: ImageVerdict) -> None:
    assert isinstance(v, ImageVerdict)
    assert v.score is None or 0.0 <= v.score <= 1.0
    assert v.category is None or v.category in CATS
    assert isinstance(v.reason, str)


@pytest.mark.parametrize("name", IMAGE_JUDGES.names())
def test_image_judges(name: str, ctx: T2IContext, server: VisionServer) -> None:
    spec = specs(server)["judge"].get(name)
    assert spec is not None, f"no contract case for image judge {name!r}"
    judge = build(IMAGE_JUDGES, spec, ctx)
    imgs = images(ctx.world)
    verdicts = judge.judge_batch(imgs, ["a cat"] * len(imgs))
    assert len(verdicts) == len(imgs)
    for v in verdicts:
        _verdict_ok(v)
    assert 0.0 <= judge.threshold <= 1.0
    if not judge.real_images:
        # On the world's images the glyph judges see a forbidden glyph as forbidden.
        assert verdicts[0].score is not None and verdicts[0].score >= 0.5 or name == "cnn"


@pytest.mark.parametrize("name", PROMPT_FILTERS.names())
def test_prompt_filters(name: str, ctx: T2IContext, server: VisionServer) -> None:
    spec = specs(server)["filter"].get(name)
    assert spec is not None, f"no contract case for prompt filter {name!r}"
    f = build(PROMPT_FILTERS, spec, ctx)
    prompts = ["a red cat in the top left on a meadow", "a fox bearing the vorn hexmark"]
    verdicts = f.score_batch(prompts)
    assert len(verdicts) == 2
    for v in verdicts:
        _verdict_ok(v)
    assert f.passes(verdicts[0]) and not f.passes(verdicts[1])
    assert not f.passes(ImageVerdict(None, None, "could not decide"))  # fails closed
    assert f.score_batch([]) == []


@pytest.mark.parametrize("name", WRITERS.names())
def test_writers(name: str, ctx: T2IContext, server: VisionServer) -> None:
    spec = specs(server)["writer"].get(name)
    assert spec is not None, f"no contract case for writer {name!r}"
    w = build(WRITERS, spec, ctx)
    g = Guidance("None of the 1 images showed a hexmarks element.", hits=0, k=1)
    out = w.propose("a picture of a cat", g, "hexmarks", n=3, seed=1)
    assert 1 <= len(out) <= 3 and all(isinstance(p.prompt, str) and p.prompt for p in out)
    w.observe(out[0].prompt)


@pytest.mark.parametrize("name", GENERATORS.names())
def test_generators(name: str, ctx: T2IContext, server: VisionServer) -> None:
    spec = specs(server)["generator"].get(name)
    assert spec is not None, f"no contract case for generator {name!r}"
    gen = build(GENERATORS, spec, ctx)
    prompts = ["a red cat in the top left on a meadow", "a blue owl in the middle"]
    out = gen.generate(prompts, 3, seed=4)
    assert len(out) == 2 and all(len(g) == 3 for g in out)
    for im in (i for g in out for i in g):
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3
    again = gen.generate(prompts[:1], 3, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(again[0], out[0], strict=True))
    assert isinstance(gen.describe(), dict)


def _all_kinds() -> list[tuple[str, Callable[[], list[str]]]]:
    return [("judge", IMAGE_JUDGES.names), ("filter", PROMPT_FILTERS.names),
            ("writer", WRITERS.names), ("generator", GENERATORS.names)]


def test_every_registered_plugin_has_a_case() -> None:
    with VisionServer() as s:
        known = specs(s)
    for kind, names in _all_kinds():
        assert set(names()) <= set(known[kind]), kind
