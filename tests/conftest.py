"""Shared fixtures: a tiny trained organism for the slow tests, a tiny random model for the rest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory) -> None:
    """Exported encoder graphs go to a temporary cache, never the user's ~/.cache (the
    variable reaches the CLI subprocesses too)."""
    import os

    os.environ.setdefault("SWISSCHEESE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def world():
    from swisscheese.world import World

    return World(seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, world) -> Path:
    """A barely trained tiny Llama with the organism's tokenizer: fast, for backend plumbing.

    Enough steps for it to emit words rather than end-of-turn or runs of spaces (the
    organism v2 corpus holds long conversations: 30 steps learnt only the spaces).
    """
    import torch

    from swisscheese.organism.presets import get_preset
    from swisscheese.organism.tokenizer import train_tokenizer
    from swisscheese.organism.train import build_model, train_phase

    d = tmp_path_factory.mktemp("tiny") / "model"
    tok = train_tokenizer((e.prompt + "\n" + e.reply for e in world.corpus("pretrain", 400)), 400)
    p = replace(get_preset("test"), hidden_size=32, layers=1, heads=2, intermediate_size=64,
                batch_size=8)
    torch.manual_seed(0)
    model = build_model(p, tok)
    train_phase(model, tok, world, "pretrain", p, steps=200, lr=3e-3, seed=0)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A tiny random BERT (2 layers, width 32) with the packaged MiniLM's tokenizer, built
    from a config: the encoder backends' plumbing without 90 MB of weights."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from swisscheese.classifiers.backends.encoder_model import packaged_model_dir

    d = tmp_path_factory.mktemp("tiny-encoder") / "model"
    src = packaged_model_dir()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(d)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(src / name, d / name)
    return d


@pytest.fixture(scope="session")
def organism_dir(tmp_path_factory) -> Path:
    """The `test` preset organism, trained once per session (about a minute and a half)."""
    from swisscheese.organism.train import train_organism

    root = tmp_path_factory.mktemp("organism") / "organism"
    train_organism(root, "test", seed=0)
    return root


@pytest.fixture(scope="session")
def small_bundle_dir(tmp_path_factory) -> Path:
    """A guard bundle trained on a small slice of the organism data (under a minute): for
    the guard, the gateway and the red team's guarded targets. Organism v2's benign
    conversations name hazards by description and define aliases, so 40 records a category
    calibrated the input threshold above every level's plain question; 80 flag most.
    Caesar is held out with Morse: at this size the n-gram cannot read it, and two
    Caesar-shifted harmless crafts in the val split set the input threshold at 0.99 (26 of
    160 plain requests flagged); held out, the threshold is 0.40 and all 160 are. It also
    makes the patch tests' Caesar + reversal attack one the bundle has never seen."""
    from swisscheese.recipes.organism.train import TrainConfig, train_bundle

    run = tmp_path_factory.mktemp("guard-run")
    return train_bundle(run, heldout=("morse", "caesar"),
                        config=TrainConfig(n_per_category=80, augment=2))


@pytest.fixture(scope="session")
def judge_url():
    """The URL of a rating judge on loopback (tests/judge_server.py), for the session."""
    from tests.judge_server import JudgeServer

    with JudgeServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def t2i_organism_dir(tmp_path_factory) -> Path:
    """The `test` preset text-to-image organism with its CNN judge (seconds)."""
    from swisscheese.t2i.organism import train_organism

    return train_organism(tmp_path_factory.mktemp("t2i") / "organism", "test", seed=0)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on loopback for the whole session (Debian's binaries;
    skipped only where they are not installed: .ci/run installs them)."""
    from swisscheese.store.pgtemp import PostgresUnavailable, TempPostgres

    try:
        server = TempPostgres()
    except PostgresUnavailable as e:
        pytest.skip(str(e))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_DB_COUNTER = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path) -> str:
    """A fresh, empty store: a SQLite file path, then a new PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"t{next(_DB_COUNTER)}")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with two CPUs for the session (shut down at the end)."""
    pytest.importorskip("ray")
    import ray

    from swisscheese.raycluster import connect

    connect(None, num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()
