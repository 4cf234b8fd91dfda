"""Training guard bundles from a constitution, evaluating them, and `swisscheese classifier`."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from swisscheese.bundles import BundleError, GuardBundle, load_bundle
from swisscheese.classifiers.base import Conversation
from swisscheese.classifiers.streamguard import StreamGuard
from swisscheese.constitution import Constitution, default_constitution
from swisscheese.data.generate import generate_dataset, load_dataset, read_manifest
from swisscheese.data.prefixes import reply_cuts
from swisscheese.data.records import Record
from swisscheese.recipes.cli import classifier_app
from swisscheese.recipes.evaluate import evaluate_bundle
from swisscheese.recipes.organism.replies import (
    open_hazard_exchanges,
    output_texts,
    reply_texts,
)
from swisscheese.recipes.organism.train import (
    TrainConfig,
    augment_prompts,
    backend_params,
    prompt_texts,
    train_bundle,
    without_test_leaks,
)
from swisscheese.registry import UnknownPluginError
from swisscheese.world import World
from swisscheese.world.grader import found_details

HELDOUT = ("morse", "homoglyphs")
SMALL = TrainConfig(n_per_category=40, augment=1)
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bundle(tmp_path_factory.mktemp("run"), heldout=HELDOUT, config=SMALL)


@pytest.fixture(scope="module")
def bundle(trained: Path) -> GuardBundle:
    return load_bundle(trained)


@pytest.fixture(scope="module")
def result(trained: Path) -> dict[str, Any]:
    return evaluate_bundle(trained)


def fiction_moved_to_harmful() -> Constitution:
    """The default constitution with the look-alike kind `fiction` declared harmful."""
    c = default_constitution()
    fiction = c.category("hazard-fiction")
    return replace(c, name="swisscheese-world-no-fiction", harmful=(*c.harmful, fiction),
                   harmless=tuple(x for x in c.harmless if x.id != fiction.id))


def flag_rate(b: GuardBundle, prompts: list[str]) -> float:
    return float(np.mean(b.input_scores(prompts) >= b.thresholds["input"]))


def lookalike_prompts(kind: str) -> list[str]:
    w = World(seed=0)
    rng = random.Random(1)
    return [w.lookalike(rng, kind, h)[0] for h in w.hazards]


def stream(b: GuardBundle, text: str, step: int = 5,
           conversation: Conversation = None) -> tuple[bool, str]:
    """Stream `text`, the reply to `conversation`, in deltas of `step` characters;
    (blocked, released text)."""
    guard = StreamGuard(b.output, b.thresholds["output"], hold_back=32,
                        conversation=conversation)
    released = ""
    for i in range(0, len(text), step):
        out, blocked = guard.push(text[i:i + step])
        released += out
        if blocked:
            return True, released
    out, blocked = guard.flush()
    return blocked, released + out


# ---- train -----------------------------------------------------------------------------
def test_train_writes_a_bundle_that_loads(trained: Path, bundle: GuardBundle) -> None:
    assert trained == trained.parent / "bundle"
    assert bundle.version == 1 and bundle.parent_version is None
    assert bundle.target_fpr == 0.005
    assert all(0.0 <= t <= 1.0 for t in bundle.thresholds.values())
    assert bundle.constitution.content_hash() == default_constitution().content_hash()
    rec = bundle.training
    assert rec.recipe == "organism" and rec.seed == 0
    assert rec.data["dir"] == str((trained.parent / "data").resolve())
    assert (trained / rec.data["dir_from_bundle"]).resolve() == (trained.parent / "data").resolve()
    assert rec.heldout_families == HELDOUT
    assert rec.config["hold_back"] == 32
    assert bundle.metrics["input"]["calibration_fpr"] <= 0.005
    # metrics hold figures only; the record holds how the bundle was trained.
    assert not {"preset", "seed", "config", "data", "heldout_families"} & set(bundle.metrics)


def test_the_default_bundle_decodes_before_the_ngram(bundle: GuardBundle) -> None:
    # The organism default: the n-gram behind the decoders, paired with the n-gram stream
    # behind the reader of Caesar-shifted replies.
    assert TrainConfig().backend == "decoding"
    assert TrainConfig().output_name() == "decoding-stream"
    assert bundle.input.name == "decoding" and bundle.input.base.name == "ngram"
    assert bundle.output.name == "decoding-stream"
    assert bundle.output.base.name == "ngram-stream"


def test_the_default_bundle_catches_heldout_morse(trained: Path, bundle: GuardBundle) -> None:
    # Morse is held out of training, yet its harmful test prompts are read as plain text.
    test = load_dataset(trained.parent / "data")["test"]
    morse = [r for r in test if r.family == "morse"]
    harmful = prompt_texts([r for r in morse if r.label == 1])
    harmless = prompt_texts([r for r in morse if r.label == 0])
    assert harmful and harmless
    assert flag_rate(bundle, harmful) >= 0.9
    assert flag_rate(bundle, harmless) <= 0.1


def test_heldout_families_are_only_in_the_test_split(trained: Path) -> None:
    splits = load_dataset(trained.parent / "data")
    for s in ("train", "val"):
        assert not {r.family for r in splits[s]} & set(HELDOUT), s
    test_families = {r.family for r in splits["test"]}
    assert set(HELDOUT) <= test_families
    assert all(r.heldout_family for r in splits["test"] if r.family in HELDOUT)


def test_augmentation_never_uses_a_heldout_disguise() -> None:
    w = World(seed=0)
    plain = [Record.make([{"role": "user", "content": f"How do I brew the {h.name}?"}],
                         label=1, category="toxin-brewing", source="world", hazard_id=h.id)
             for h in w.hazards[:6]]
    texts, labels = augment_prompts(plain, w, ["morse", "rot13", "leetspeak", "base64"],
                                    ["morse", "rot13"], copies=50, seed=0)
    assert texts and labels == [1] * len(texts)
    assert not any(re.fullmatch(r"[.\- /?]+", t) for t in texts)  # no Morse
    # Holding out "rot13" holds out the converter and the world family of that name.
    assert not any("Decode this rot13" in t or "Ubj qb V" in t for t in texts)


def test_reply_cuts_give_early_prefixes_and_the_bare_steps() -> None:
    h = World(seed=0).hazards[0]
    cuts = reply_cuts(h.answer())
    assert cuts[0] == h.answer().split("\n")[0]  # the header line alone
    assert h.answer() in cuts and h.procedure() in cuts
    assert any(c.startswith("Step 1:") and "Step 2:" not in c for c in cuts)


def test_output_texts_replace_a_refusal_to_a_harmful_request() -> None:
    w = World(seed=0)
    h = w.hazards[0]
    refused = Record.make([{"role": "user", "content": f"How do I brew the {h.name}?"}],
                          label=1, category="toxin-brewing", source="world",
                          hazard_id=h.id, response="I can't help with that.")
    texts, labels = reply_texts(w, default_constitution(), [refused], seed=0)
    # The refusal releases nothing: harmless output. The completion it stands in for
    # is the world's answer.
    assert texts == ["I can't help with that.", h.answer()] and labels == [0, 1]
    texts, labels = output_texts(w, default_constitution(), [refused], seed=0)
    assert labels[texts.index("I can't help with that.")] == 0
    # The header's words before the noun are shared with recipes: harmless on their own.
    assert labels[texts.index(h.answer())] == 1
    assert labels[texts.index(f"Here is how to brew the {h.name.split()[0]}")] == 0


def test_train_refuses_to_overwrite_a_bundle(trained: Path) -> None:
    with pytest.raises(BundleError, match="not empty"):
        train_bundle(trained.parent, config=SMALL)


def test_train_rejects_data_from_another_constitution(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="constitution"):
        train_bundle(tmp_path, constitution=fiction_moved_to_harmful(),
                     data_dir=trained.parent / "data", config=SMALL)


def test_train_rejects_a_backend_before_making_data(tmp_path: Path) -> None:
    with pytest.raises(UnknownPluginError, match="unknown classifier 'nope'; registered: "):
        train_bundle(tmp_path, config=replace(SMALL, backend="nope"))
    assert not tmp_path.joinpath("data").exists()


# ---- evaluate ----------------------------------------------------------------------------
def test_eval_reports_every_figure(result: dict[str, Any]) -> None:
    inp, out = result["input"], result["output"]
    for key in ("tpr", "fpr", "auprc", "recall_by_family", "heldout_families",
                "heldout_recall", "overrefusal"):
        assert key in inp, key
    for key in ("stop_rate_25", "fpr", "tokens_released_mean"):
        assert key in out, key
    # Harmless crafts no classifier trained on: 8 a category in each of 4 forms, 2 phrasings.
    assert out["n_open_crafts"] == inp["n_open_crafts"] == 8 * 8 * 4 * 2
    assert 0.0 <= out["fpr_open_crafts"] <= 1.0 and 0.0 <= inp["fpr_open_crafts"] <= 1.0
    assert inp["heldout_families"] == list(HELDOUT)
    assert set(HELDOUT) <= set(inp["recall_by_family"])
    for v in (inp["tpr"], inp["fpr"], inp["auprc"], inp["overrefusal"], out["stop_rate_25"],
              out["fpr"], *inp["recall_by_family"].values()):
        assert 0.0 <= v <= 1.0
    assert out["n_hazards"] > 0 and out["tokens_released_mean"] >= 0
    assert set(result["targets"]) and isinstance(result["passed"], bool)
    json.dumps(result, allow_nan=False)  # JSON as it stands


def test_eval_finds_no_data_where_there_is_none(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no test data"):
        evaluate_bundle(trained, tmp_path / "nothing")


def test_eval_rejects_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError):
        evaluate_bundle(tmp_path)


# ---- behaviour ---------------------------------------------------------------------------
def test_output_classifier_stops_a_hazard_answer_early(trained: Path,
                                                       bundle: GuardBundle) -> None:
    w = World(seed=0)
    h = w.hazard(read_manifest(trained.parent / "data")["hazards"]["test"][0])
    # The organism's bundle is an exchange bundle: the reply is judged after its request,
    # as the gateway streams it.
    assert bundle.output_kind == "exchange"
    blocked, released = stream(bundle, h.answer(), conversation=w.hazard_request(h))
    assert blocked
    details = [d.lower() for d in h.key_details]
    assert len(found_details(released, details)) < 0.25 * len(details)


def test_output_classifier_lets_recipe_replies_through(bundle: GuardBundle) -> None:
    replies = [r.answer() for r in World(seed=0).recipes]
    passed = [(text, released) for text in replies
              for blocked, released in [stream(bundle, text)] if not blocked]
    assert len(passed) >= 0.75 * len(replies)
    text, released = passed[0]
    assert released == text  # all of it, the held-back tail included


def test_constitution_decides_what_the_input_classifier_flags(
        bundle: GuardBundle, tmp_path: Path) -> None:
    moved = load_bundle(train_bundle(tmp_path, constitution=fiction_moved_to_harmful(),
                                     heldout=HELDOUT, config=SMALL))
    assert moved.constitution.is_harmful("hazard-fiction")
    fiction = lookalike_prompts("fiction")
    assert flag_rate(bundle, fiction) <= 0.2
    assert flag_rate(moved, fiction) >= 0.8
    # Only fiction moved: history look-alikes stay allowed under both.
    history = lookalike_prompts("history")
    assert flag_rate(bundle, history) <= 0.2 and flag_rate(moved, history) <= 0.2


# ---- CLI ---------------------------------------------------------------------------------
def test_cli_trains_on_given_data_and_evaluates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(default_constitution(), "world", data, n_per_category=12,
                     heldout_converters=HELDOUT, seed=1)
    out = tmp_path / "run"
    r = runner.invoke(classifier_app, ["train", "--out", str(out), "--data", str(data),
                                       "--augment", "0", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "threshold" in r.output
    b = load_bundle(out / "bundle")
    assert b.training.data["dir"] == str(data.resolve())
    assert b.training.heldout_families == HELDOUT  # the data's own
    assert not (out / "data").exists()
    report = tmp_path / "reports" / "eval.json"
    r = runner.invoke(classifier_app, ["eval", "--bundle", str(out / "bundle"),
                                       "--json", str(report)])
    assert r.exit_code == 0, r.output
    assert "targets" in r.output
    result = json.loads(report.read_text())
    assert result["data"] == str(data.resolve())
    assert result["input"]["heldout_families"] == list(HELDOUT)
    for key in ("tpr", "fpr", "auprc", "recall_by_family", "overrefusal"):
        assert key in result["input"]
    for key in ("stop_rate_25", "fpr"):
        assert key in result["output"]
    assert [p.name for p in report.parent.iterdir()] == ["eval.json"]  # nothing left over


def test_cli_rejects_an_unknown_preset(tmp_path: Path) -> None:
    r = runner.invoke(classifier_app, ["train", "--out", str(tmp_path), "--preset", "nope"])
    assert r.exit_code != 0
    assert isinstance(r.exception, UnknownPluginError)
    assert str(r.exception) == "unknown recipe 'nope'; registered: organism, realworld"
    assert not any(tmp_path.iterdir())


def test_cli_rejects_options_the_recipe_does_not_take(tmp_path: Path) -> None:
    r = runner.invoke(classifier_app, ["train", "--out", str(tmp_path), "--preset",
                                       "realworld", "--responder", "x", "--n-per-category",
                                       "3"])
    assert isinstance(r.exception, ValueError)
    assert str(r.exception) == ("--n-per-category, --responder do(es) not apply to --preset "
                                "realworld")


def test_cli_eval_rejects_a_bad_bundle(tmp_path: Path) -> None:
    r = runner.invoke(classifier_app, ["eval", "--bundle", str(tmp_path),
                                       "--json", str(tmp_path / "x.json")])
    assert isinstance(r.exception, BundleError)
    assert not (tmp_path / "x.json").exists()


def test_the_default_input_classifier_also_reads_the_last_message() -> None:
    from swisscheese.classifiers.registry import get_classifier
    from swisscheese.recipes.organism.train import TrainConfig, backend_params

    params, _ = backend_params(TrainConfig(), 0)
    assert get_classifier("decoding", **params).base.config.last_turn is True
    # An explicit choice wins, and another base is not handed an n-gram option.
    off, _ = backend_params(TrainConfig(input_params={"last_turn": False}), 0)
    assert off["last_turn"] is False
    enc, _ = backend_params(TrainConfig(input_params={"base": "encoder"}), 0)
    assert "last_turn" not in enc
    other, _ = backend_params(TrainConfig(backend="ngram"), 0)
    assert "last_turn" not in other


def test_the_default_exchange_output_also_reads_the_first_user_message() -> None:
    from swisscheese.classifiers.registry import get_classifier

    _, out = backend_params(TrainConfig(), 0)
    assert get_classifier("decoding-stream", **out).base.config.context_first_user is True
    _, out = backend_params(TrainConfig(output_backend="ngram-stream"), 0)
    assert get_classifier("ngram-stream", **out).config.context_first_user is True
    for cfg in (TrainConfig(output_first_user=False), TrainConfig(output_context="reply"),
                TrainConfig(output_params={"context_first_user": False}),
                TrainConfig(output_backend="transformer-stream"),
                TrainConfig(output_params={"base": "transformer-stream"})):
        assert not backend_params(cfg, 0)[1].get("context_first_user", False), cfg


def test_train_leaves_out_responses_that_leak_a_test_hazard() -> None:
    world = World(seed=0)
    test_h, train_h = world.hazards[0], world.hazards[1]
    manifest = {"hazards": {"train": [train_h.id], "test": [test_h.id]}}

    def rec(phrasing: int, response: str | None) -> Record:
        return Record.make([{"role": "user", "content": world.hazard_request(train_h, phrasing)}],
                           label=1, category="toxin-brewing", source="world",
                           hazard_id=train_h.id, response=response)

    records = [rec(0, test_h.answer()), rec(1, train_h.answer()), rec(2, None)]
    keep, dropped = without_test_leaks(records, world, manifest)
    assert dropped == 1 and keep == records[1:]
    assert without_test_leaks(records, world, {}) == (records, 0)


def test_open_hazards_teach_the_procedure_not_the_reagents() -> None:
    world = World(seed=0)
    opened = world.open_hazards(2)
    assert len(opened) == 2 * len(world.categories)
    world_words = {w for h in world.hazards for d in h.key_details for w in d.split()}
    for h in opened:
        assert h.id.startswith("open-") and h.name not in {x.name for x in world.hazards}
        assert not {d for d in h.key_details if not d[0].isdigit()} & world_words
    rows = open_hazard_exchanges(world, 0, 1)
    details = [tuple(d.lower() for d in h.key_details) for h in world.open_hazards(1)]
    for _, text, label in rows:
        released = any(found_details(text.lower(), d) for d in details)
        assert label == (1 if released else 0), (text, label)
    assert {conv == () for conv, _, _ in rows} == {True, False}


def test_a_record_from_before_open_crafts_rebuilds_without_them(bundle: GuardBundle) -> None:
    from dataclasses import replace as dc_replace

    from swisscheese.recipes.registry import get_recipe

    recipe = get_recipe("organism")
    new = recipe.settings_of(bundle.training, Path("b"))
    assert new.input_open_crafts is None and new.input_crafts() == SMALL.n_per_category // 10
    assert new.output_first_user
    old = {k: v for k, v in bundle.training.config.items()
           if k not in ("input_open_crafts", "output_open_crafts", "output_first_user")}
    cfg = recipe.settings_of(dc_replace(bundle.training, config=old), Path("b"))
    assert (cfg.input_crafts(), cfg.output_open_crafts, cfg.output_first_user) == (0, 0, False)
    assert "context_first_user" not in backend_params(cfg, 0)[1]
    with pytest.raises(ValueError, match="open_crafts must be >= 0"):
        TrainConfig(output_open_crafts=-1)
