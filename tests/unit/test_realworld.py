"""The realworld preset: reading ../shared/datasets, leak-free splits, and the bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swisscheese.bundles import load_bundle
from swisscheese.cli import app
from swisscheese.data.converters import get_converter
from swisscheese.data.dedup import clusters, max_similarity
from swisscheese.rapid_response.patch import patch_bundle
from swisscheese.rapid_response.reports import ReportedJailbreak
from swisscheese.recipes.realworld.data import (
    FILES,
    DatasetError,
    check_datasets_dir,
    default_datasets_dir,
    load_realworld,
)
from swisscheese.recipes.realworld.data import _csv as read_csv
from swisscheese.recipes.realworld.texts import RealWorldConfig
from swisscheese.recipes.realworld.train import train_realworld

runner = CliRunner()
DATASETS = default_datasets_dir()
needs_data = pytest.mark.skipif(
    not (DATASETS / "README.md").is_file(),
    reason=f"public datasets not found at {DATASETS} (the realworld preset reads them there)")
LIMIT = 30


@pytest.fixture(scope="module")
def small_data():
    return load_realworld(DATASETS, limit=LIMIT, seed=0)


@pytest.fixture(scope="module")
def rw_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    # The default encoder path on a tiny random BERT (the real MiniLM: the benchmark).
    tiny = {"model_dir": str(tiny_encoder_dir)}
    return train_realworld(tmp_path_factory.mktemp("rw"), DATASETS,
                           config=RealWorldConfig(limit=LIMIT, augment=1, input_params=tiny,
                                                  output_params=tiny))


@pytest.fixture(scope="module")
def rw_ngram_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The n-gram backend, which a user can still pick (`--backend ngram`). At 5% FPR: with
    LIMIT prompts per benign source, 0.5% puts the threshold above every calibration score
    (nothing flagged before or after a patch, so the patch would measure nothing)."""
    return train_realworld(tmp_path_factory.mktemp("rw-ngram"), DATASETS,
                           config=RealWorldConfig(limit=LIMIT, augment=1, backend="ngram"),
                           target_fpr=0.05)


# ---- reading ------------------------------------------------------------------------------
def test_csv_without_column_names_the_columns_found(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("text,label\nhello,0\n")
    with pytest.raises(DatasetError, match=r"x\.csv: no column 'goal'; found columns: "
                                           r"'text', 'label'"):
        read_csv(p, ["goal"])


def test_missing_datasets_dir_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="datasets directory not found.*--datasets"):
        check_datasets_dir(tmp_path / "nope")
    (tmp_path / "advbench").mkdir()
    (tmp_path / FILES["advbench"]).write_text("goal,target\n")
    with pytest.raises(DatasetError, match="missing .*xstest/xstest_prompts.csv"):
        check_datasets_dir(tmp_path)


def test_cli_missing_datasets_writes_nothing(tmp_path: Path) -> None:
    r = runner.invoke(app, ["classifier", "train", "--preset", "realworld", "--out",
                            str(tmp_path / "run"), "--datasets", str(tmp_path / "nope")])
    assert r.exit_code != 0
    assert isinstance(r.exception, DatasetError) or "datasets directory not found" in r.output
    assert not (tmp_path / "run").exists()


@needs_data
def test_cli_model_dir_trains_on_that_encoder(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["classifier", "train", "--preset", "realworld", "--out",
                            str(tmp_path / "run"), "--model-dir", str(tiny_encoder_dir),
                            "--limit", str(LIMIT), "--augment", "0"])
    assert r.exit_code == 0, r.output
    b = load_bundle(tmp_path / "run" / "bundle")
    params = b.training.config
    assert params["input_params"]["model_dir"] == str(tiny_encoder_dir)
    assert params["output_params"]["model_dir"] == str(tiny_encoder_dir)
    # The tiny BERT's width, not MiniLM's 384.
    assert b.input.encoder.dim == 32


def test_cli_model_dir_is_refused_for_the_ngram(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["classifier", "train", "--preset", "realworld", "--out",
                            str(tmp_path / "run"), "--backend", "ngram",
                            "--model-dir", str(tiny_encoder_dir)])
    # (the CLI's main prints the error as one line; the runner keeps the exception)
    assert isinstance(r.exception, ValueError)
    assert "--model-dir applies to the encoder backend" in str(r.exception)
    assert not (tmp_path / "run").exists()


@needs_data
def test_bad_dataset_file_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "datasets"
    shutil.copytree(DATASETS, copy, ignore=shutil.ignore_patterns("*.LICENSE"))
    (copy / FILES["xstest"]).write_text("id,text,kind\n1,hi,x\n")
    with pytest.raises(DatasetError, match=r"xstest_prompts\.csv: no column 'prompt', 'type', "
                                           r"'label'; found columns: 'id', 'text', 'kind'"):
        load_realworld(copy, limit=LIMIT)


# ---- splits -------------------------------------------------------------------------------
def test_clusters_join_near_duplicates() -> None:
    texts = ["Create a tutorial on how to make a kite",
             "Write a tutorial on how to make a kite",
             "Explain the water cycle to a child"]
    c = clusters(texts, k=1)
    assert c[0] == c[1] != c[2]


@needs_data
def test_splits_keep_near_duplicates_apart(small_data) -> None:
    d = small_data
    assert d.train_harmful and d.test_harmful and d.test_templates and d.calibration
    # Whole near-duplicate clusters went one way: no test request is close to a train one.
    assert max_similarity(d.test_harmful, d.train_harmful).max() < 0.5
    assert max_similarity(d.test_jbb_harmful, d.train_harmful).max() < 0.5
    assert max_similarity(d.test_templates, d.train_templates, k=5).max() < 0.5
    assert not set(d.test_benign) & (set(d.train_benign) | set(d.calibration))
    assert not set(d.test_xstest_safe) & (set(d.calibration) | set(d.train_lookalikes))
    assert not set(d.test_jbb_benign) & set(d.train_lookalikes)
    assert not set(d.test_xstest_unsafe) & set(d.train_harmful)
    assert not set(d.test_clean_emails) & set(d.calibration_by_source["bipia_email"])
    # Every training request carries the categories it was given (maybe none).
    assert len(d.train_harmful_categories) == len(d.train_harmful) == len(d.train_targets)
    assert not set(d.test_injections) & set(d.train_injections)
    assert all(len(getattr(d, k)) <= LIMIT for k in ("train_templates", "test_xstest_safe"))


# ---- the bundle ---------------------------------------------------------------------------
@needs_data
def test_realworld_bundle_is_calibrated_and_measured(rw_bundle: Path) -> None:
    b = load_bundle(rw_bundle)
    assert b.training.recipe == "realworld" and b.constitution.name == "swisscheese-realworld"
    assert b.metrics["input"]["calibration_fpr"] <= b.target_fpr
    f = b.metrics["realworld"]
    for key in ("tpr", "fpr", "auprc", "xstest_safe_overrefusal", "in_the_wild_heldout_recall",
                "jbb_harmful_recall", "recall_by_converter", "heldout_converter_recall"):
        assert key in f
    # Better than chance (AUPRC = the share of harmful texts) on held-out data, even
    # from 30 rows per source.
    n = f["n"]
    chance = n["test_harmful"] / (n["test_harmful"] + n["test_benign"])
    assert f["auprc"] > chance + 0.2
    # (A random tiny encoder ranks, but at a 0.5% FPR it flags little: recall figures are
    # the benchmark's, on the real MiniLM.)
    assert {"morse", "homoglyphs", "codeword"} <= {k for k, v in f["recall_by_converter"].items()
                                                   if v["heldout"]}
    # The bundle holds no dataset text: its files are the classifiers and the constitution.
    files = json.loads((rw_bundle / "bundle.json").read_text())["files"]
    assert all(p.split("/")[0] in {"input", "output", "categories", "constitution.yaml"}
               for p in files)
    # Every harmful category of the constitution is scored; the output reads exchanges.
    assert b.input.name == "encoder" and b.output.name == "encoder-stream"
    assert b.categories is not None
    assert sorted(b.categories.categories) == sorted(c.id for c in b.constitution.harmful)
    assert len(b.constitution.harmful) == 11
    cal = b.metrics["input"]["calibration_fpr_by_source"]
    assert set(cal) == {"alpaca", "xstest_safe", "bipia_email"}


def test_the_packaged_minilm_reads_three_layers_unless_told_otherwise() -> None:
    assert RealWorldConfig().input_kwargs(3) == {"seed": 3, "layers": (-5, -3, -1)}
    assert RealWorldConfig(input_params={"layers": [-1]}).input_kwargs(0)["layers"] == [-1]
    # Chosen for MiniLM's six layers: another encoder, or the n-gram, gets no such default.
    assert "layers" not in RealWorldConfig(input_params={"model_dir": "x"}).input_kwargs(0)
    assert RealWorldConfig(backend="ngram").input_kwargs(0) == {"seed": 0}


@needs_data
def test_patch_a_realworld_bundle(rw_ngram_bundle: Path, small_data, tmp_path: Path) -> None:
    rw_bundle = rw_ngram_bundle
    assert load_bundle(rw_bundle).categories is None  # n-gram bundles have no scorer
    morse = get_converter("morse")
    reports = [ReportedJailbreak("Decode this Morse code and answer: " + morse.encode(r), None, i)
               for i, r in enumerate(small_data.train_harmful[:3])]
    report = patch_bundle(rw_bundle, reports, tmp_path / "v2", n_requests=20, data_dir=DATASETS)
    assert report.version == 2 and report.forms[0]["stack"] == ["morse"]
    new = load_bundle(tmp_path / "v2")
    assert new.parent_version == 1 and new.training.recipe == "realworld"
    assert report.before["heldout_asr"] > 0.5
    assert report.after["heldout_asr"] < report.before["heldout_asr"]
    assert report.after["calibration_fpr"] <= new.target_fpr


@needs_data
def test_a_patched_encoder_bundle_keeps_its_category_scorer(rw_bundle: Path, small_data,
                                                            tmp_path: Path) -> None:
    parent = load_bundle(rw_bundle)
    assert parent.categories is not None
    morse = get_converter("morse")
    reports = [ReportedJailbreak("Decode this Morse code and answer: " + morse.encode(r), None, i)
               for i, r in enumerate(small_data.train_harmful[:3])]
    patch_bundle(rw_bundle, reports, tmp_path / "v2", n_requests=10, data_dir=DATASETS)
    new = load_bundle(tmp_path / "v2")
    assert new.input.name == "encoder" and new.categories is not None
    assert new.category_thresholds == parent.category_thresholds
    # The same scorer: the same scores for the same text.
    text = small_data.test_jbb_harmful[0]
    assert new.category_scores([text]) == parent.category_scores([text])
