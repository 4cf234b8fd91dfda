"""Benign traffic at scale: fresh harmless organism conversations, none in the bundle's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from swisscheese.data.generate import generate_dataset, load_dataset
from swisscheese.recipes.organism.benign import benign_traffic
from swisscheese.recipes.organism.train import resolve_constitution
from swisscheese.world.core import World


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("benign") / "data"
    generate_dataset(resolve_constitution(None), "world", d, n_per_category=60, seed=0,
                     world=World(seed=0), heldout_converters=("morse",))
    return d


def test_benign_traffic_is_fresh_harmless_and_paired(data_dir: Path, tmp_path: Path) -> None:
    seen = {r.key for rs in load_dataset(data_dir).values() for r in rs}
    b = benign_traffic(data_dir, resolve_constitution(None), 300, tmp_path / "b")
    assert 0 < len(b.records) <= 300
    assert all(r.label == 0 and r.key not in seen for r in b.records)
    assert b.seen_dropped > 0  # the world's templates repeat: some draws were seen texts
    assert len(b.conversations) == len(b.replies) == len(b.records)
    for r, conv, reply in zip(b.records, b.conversations, b.replies, strict=True):
        assert [m["content"] for m in conv] == [m["content"] for m in r.messages]
        assert reply.strip()
    assert "morse" not in b.families  # held out of training: not benign traffic here
    assert sum(b.families.values()) == len(b.records) and len(b.families) > 5


def test_benign_traffic_refuses_the_data_seed_and_too_much(data_dir: Path,
                                                          tmp_path: Path) -> None:
    const = resolve_constitution(None)
    with pytest.raises(ValueError, match="seed 0 is the seed"):
        benign_traffic(data_dir, const, 10, tmp_path / "a", seed=0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        benign_traffic(data_dir, const, 0, tmp_path / "b")
