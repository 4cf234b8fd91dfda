"""`swisscheese classifier eval` on a realworld bundle: the figures measured afresh on the
public datasets equal those training stored, under the common JSON keys."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from swisscheese.bundles import BundleError
from swisscheese.cli import app
from swisscheese.recipes.cli import classifier_app
from swisscheese.recipes.evaluate import evaluate_bundle
from swisscheese.recipes.realworld.data import FILES, DatasetError, default_datasets_dir
from swisscheese.recipes.realworld.texts import RealWorldConfig
from swisscheese.recipes.realworld.train import train_realworld

runner = CliRunner()
DATASETS = default_datasets_dir()
pytestmark = pytest.mark.skipif(
    not (DATASETS / "README.md").is_file(),
    reason=f"public datasets not found at {DATASETS} (the realworld preset reads them there)")
LIMIT = 30


@pytest.fixture(scope="module")
def rw_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # seed 3, not train_realworld's default, so a seed that is not read back shows up.
    return train_realworld(tmp_path_factory.mktemp("rw"), DATASETS,
                           config=RealWorldConfig(limit=LIMIT, augment=1), seed=3)


@pytest.fixture(scope="module")
def stored(rw_bundle: Path) -> dict[str, Any]:
    return json.loads((rw_bundle / "bundle.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def record(rw_bundle: Path) -> dict[str, Any]:
    return json.loads((rw_bundle / "bundle.json").read_text())["training"]


def edited_copy(bundle: Path, dest: Path, edit: Callable[[dict[str, Any]], None],
                section: str = "metrics") -> Path:
    """A copy of `bundle` whose bundle.json `section` (metrics or training) `edit` changed
    (bundle.json is not among the hashed files, so the copy still loads)."""
    shutil.copytree(bundle, dest)
    meta = json.loads((dest / "bundle.json").read_text())
    edit(meta[section])
    (dest / "bundle.json").write_text(json.dumps(meta))
    return dest


def test_cli_eval_reproduces_the_training_figures(rw_bundle: Path, stored: dict[str, Any],
                                                  record: dict[str, Any],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval.json"
    r = runner.invoke(app, ["classifier", "eval", "--bundle", str(rw_bundle),
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    f = stored["realworld"]
    assert res["kind"] == "realworld" and res["data"] == str(DATASETS.resolve())
    assert res["setup"] == {"seed": 3, "limit": LIMIT, "heldout": record["heldout_families"]}
    assert res["realworld"] == f
    assert res["recorded_figures_match"] is True and res["recorded_figures_differ"] == []
    inp, outp = res["input"], res["output"]
    assert (inp["tpr"], inp["fpr"], inp["auprc"]) == (f["tpr"], f["fpr"], f["auprc"])
    assert inp["overrefusal"] == f["xstest_safe_overrefusal"]
    assert inp["recall_by_family"] == {k: v["recall"]
                                       for k, v in f["recall_by_converter"].items()}
    assert inp["heldout_families"] == ["morse", "homoglyphs", "codeword"]
    assert inp["heldout_recall"] == f["heldout_converter_recall"]
    for key in ("jbb_harmful_recall", "jbb_benign_fpr", "xstest_unsafe_recall",
                "in_the_wild_heldout_recall", "prompt_injection_heldout_recall"):
        assert inp[key] == f[key]
    assert outp["fpr"] == f["output_jbb_benign_target_fpr"]
    assert outp["jbb_harmful_target_recall"] == f["output_jbb_target_recall"]
    assert outp["stop_rate_25"] is None and "no model replies" in outp["note"]
    # Only the goals a public-data figure measures, marked as the organism's.
    assert set(res["targets"]) == {"input TPR", "input FPR", "held-out family recall",
                                   "output FPR"}
    assert res["targets"]["input TPR"]["value"] == f["tpr"]
    assert "organism" in res["targets_basis"]
    assert res["passed"] == all(t["pass"] for t in res["targets"].values())
    # The printed table shows the same figures.
    assert "TPR at calibrated FPR" in r.output and f"{f['tpr']:.4f}" in r.output
    assert "codeword (held out)" in r.output
    assert "figures equal those recorded at training" in r.output
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]


def test_changed_figures_are_reported(rw_bundle: Path, stored: dict[str, Any],
                                      tmp_path: Path) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["realworld"]["tpr"] = -1.0
        m["realworld"]["recall_by_converter"]["morse"]["recall"] = -1.0

    res = evaluate_bundle(edited_copy(rw_bundle, tmp_path / "b", edit))
    assert res["recorded_figures_match"] is False
    assert res["recorded_figures_differ"] == ["recall_by_converter.morse.recall", "tpr"]
    assert res["input"]["tpr"] == stored["realworld"]["tpr"]


def test_a_stale_recorded_datasets_dir_falls_back_to_the_default(rw_bundle: Path,
                                                                  tmp_path: Path) -> None:
    def edit(t: dict[str, Any]) -> None:
        t["data"]["datasets_dir"] = str(tmp_path / "moved-away")

    res = evaluate_bundle(edited_copy(rw_bundle, tmp_path / "b", edit, "training"))
    assert res["data"] == str(DATASETS) and res["recorded_figures_match"] is True


def test_a_datasets_dir_missing_a_file_is_named_and_nothing_written(rw_bundle: Path,
                                                                   tmp_path: Path) -> None:
    d = tmp_path / "datasets"
    shutil.copytree(DATASETS / "advbench", d / "advbench")
    out = tmp_path / "eval.json"
    r = runner.invoke(classifier_app, ["eval", "--bundle", str(rw_bundle), "--json", str(out),
                                       "--data", str(d)])
    assert isinstance(r.exception, DatasetError)
    assert str(d) in str(r.exception) and FILES["xstest"] in str(r.exception)
    assert FILES["advbench"] not in str(r.exception)
    assert not out.exists()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update(recipe="mystery"),
     "training.recipe: unknown recipe 'mystery'; registered: organism, realworld"),
    (lambda t: t.pop("seed"), "'training' lacks seed"),
    (lambda t: t["config"].update(limit="30"), "limit must be null or an integer, got '30'"),
    (lambda t: t["config"].update(augmnet=3), "unknown config keys ['augmnet']"),
    (lambda t: t.update(heldout_families="morse"), "training.heldout_families must be a list"),
    (lambda t: t.update(heldout_families=["nope"]), "unknown held-out converter(s) nope"),
])
def test_a_bundle_it_cannot_measure_is_named(rw_bundle: Path, tmp_path: Path,
                                             edit: Callable[[dict[str, Any]], None],
                                             message: str) -> None:
    b = edited_copy(rw_bundle, tmp_path / "b", edit, "training")
    out = tmp_path / "eval.json"
    r = runner.invoke(classifier_app, ["eval", "--bundle", str(b), "--json", str(out)])
    assert isinstance(r.exception, ValueError)
    assert str(b / "bundle.json") in str(r.exception) and message in str(r.exception)
    assert not out.exists()


def test_reply_options_do_not_apply(rw_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    r = runner.invoke(classifier_app, ["eval", "--bundle", str(rw_bundle), "--json", str(out),
                                       "--replies", "responses"])
    assert isinstance(r.exception, ValueError)
    assert "replies='responses'" in str(r.exception) and str(rw_bundle) in str(r.exception)
    # Refused before the (nonexistent) model would be loaded.
    r = runner.invoke(classifier_app, ["eval", "--bundle", str(rw_bundle), "--json", str(out),
                                       "--responder", str(tmp_path / "no-model")])
    assert isinstance(r.exception, ValueError) and "--responder" in str(r.exception)
    assert not out.exists()
    with pytest.raises(ValueError, match="hold_back"):
        evaluate_bundle(rw_bundle, hold_back=8)
    with pytest.raises(BundleError):
        evaluate_bundle(tmp_path)
