"""Campaigns, data generation and batch classification on a local Ray instance: the same
attempts, summary, files and store as the in-process path; resume works the same; an
address where no cluster listens fails at once and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swisscheese.raycluster import RayUnavailable
from swisscheese.redteam.campaign import RayOptions, comparable, run_campaign
from swisscheese.redteam.config import load_config
from swisscheese.store.campaigns import CampaignStore

CONFIG = """\
name: tiny-ray
base: {base}
behaviours:
  - world: levels
attacks:
  - name: plain
    options: {{max_new_tokens: 24}}
  - name: best_of_n
    options: {{n: 2, chunk: 1, max_new_tokens: 16}}
targets: [aligned, helpful-only]
overrefusal: 2
batch_size: 3
"""


def lines(run: Path) -> list[dict]:
    return comparable([json.loads(x) for x in (run / "attempts.jsonl").read_text().splitlines()])


def test_a_campaign_on_ray_matches_the_in_process_run_and_resumes(
        organism_dir: Path, tmp_path: Path, ray_local) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(base=organism_dir))
    here = run_campaign(load_config(config), tmp_path / "here")
    there = run_campaign(load_config(config), tmp_path / "ray", ray=RayOptions(workers=2))
    assert here.errors == 0 and there.new == here.new == here.attempts > 20
    assert lines(tmp_path / "ray") == lines(tmp_path / "here")
    assert there.summary == here.summary

    # A crash that lost one target's attempts: the resumed run on Ray fills them in.
    with CampaignStore(tmp_path / "ray" / "store.sqlite") as store:
        from sqlalchemy import delete

        from swisscheese.store.schema import campaign_attempts, campaign_units

        with store.engine.begin() as conn:
            for t in (campaign_attempts, campaign_units):
                conn.execute(delete(t).where(t.c.target == "helpful-only"))
    again = run_campaign(load_config(config), tmp_path / "ray", ray=RayOptions(workers=2))
    assert again.resumed and 0 < again.new < here.attempts
    assert lines(tmp_path / "ray") == lines(tmp_path / "here")


def test_an_unreachable_ray_address_fails_before_anything_is_written(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from swisscheese.cli import app
    from swisscheese.serve.server import free_port

    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(base=tmp_path / "organism"))  # never loaded: no cluster
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RayUnavailable, match=f"cannot reach the Ray cluster at {address}"):
        from swisscheese.raycluster import _probe

        _probe(address)
    r = CliRunner().invoke(app, ["redteam", "run", "--config", str(config), "--out",
                                 str(tmp_path / "run"), "--ray", "--ray-address", address])
    assert r.exit_code == 1 and f"cannot reach the Ray cluster at {address}" in r.output
    assert not (tmp_path / "run" / "store.sqlite").exists()


def test_data_generate_and_classify_on_ray_write_the_same_files(
        tiny_model_dir: Path, small_bundle_dir: Path, tmp_path: Path, ray_local) -> None:
    from swisscheese.bundles.classify import classify_file
    from swisscheese.constitution.loader import default_constitution
    from swisscheese.data.generate import generate_dataset
    from swisscheese.models import GenerationParams, load_model
    from swisscheese.raycluster import ModelActors

    params = GenerationParams(max_new_tokens=8, temperature=0.0, seed=0)
    kw = dict(n_per_category=3, converters=["rot13"], seed=0, response_params=params)
    c = default_constitution()
    generate_dataset(c, "world", tmp_path / "here", responder=load_model(str(tiny_model_dir)),
                     **kw)
    actors = ModelActors(str(tiny_model_dir), workers=2)
    generate_dataset(c, "world", tmp_path / "ray", responder=actors, **kw)
    actors.close()
    for split in ("train.jsonl", "val.jsonl", "test.jsonl"):
        a, b = (tmp_path / "here" / split).read_text(), (tmp_path / "ray" / split).read_text()
        assert a == b and '"response": "' in a

    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"question {i}", "response": f"answer {i}"})
                           + "\n" for i in range(1200)))  # three batches of 512
    here = classify_file(small_bundle_dir, src, tmp_path / "here.jsonl")
    there = classify_file(small_bundle_dir, src, tmp_path / "ray.jsonl", ray=True,
                          ray_workers=2)
    assert (tmp_path / "here.jsonl").read_text() == (tmp_path / "ray.jsonl").read_text()
    assert (here.rows, here.flagged, here.responses) == (there.rows, there.flagged,
                                                         there.responses) == (1200, here.flagged,
                                                                              1200)
