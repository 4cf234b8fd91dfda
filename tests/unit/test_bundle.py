"""Guard bundles (build, save, load, tamper checks) and classifying JSONL/CSV files."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from swisscheese.bundles import (
    BundleError,
    GuardBundle,
    build_bundle,
    load_bundle,
    save_bundle,
    stream_max_score,
)
from swisscheese.bundles.classify import ClassifyError, classify_file
from swisscheese.bundles.cli import classify, classify_app
from swisscheese.constitution import default_constitution
from swisscheese.world import World

TARGET_FPR = 0.02


class Data:
    """World-derived texts: harmful = plain hazard requests and hazard answers; benign =
    look-alikes and utility tasks, alternately for training and for calibration."""

    def __init__(self) -> None:
        w = World(seed=0)
        self.world = w
        attacks = w.eval_attacks("plain")
        look, util = w.eval_lookalikes(), w.eval_utility(60)
        self.harmful = [e.prompt for e in attacks]
        benign_train = look[::2] + util[::2]
        benign_cal = look[1::2] + util[1::2]
        self.train_texts = self.harmful + [e.prompt for e in benign_train]
        self.train_labels = [1] * len(self.harmful) + [0] * len(benign_train)
        self.cal_texts = [e.prompt for e in benign_cal]
        self.answers = [h.answer() for h in w.hazards]
        self.out_texts = self.answers + [e.reply for e in benign_train]
        self.out_labels = [1] * len(self.answers) + [0] * len(benign_train)
        self.cal_out = [e.reply for e in benign_cal]
        # An obvious hazard request and its answer; an obvious utility task and its reply.
        self.hazard_prompt, self.hazard_answer = attacks[1].prompt, attacks[1].reply
        self.utility_prompt, self.utility_reply = util[0].prompt, util[0].reply


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def bundle(data: Data) -> GuardBundle:
    return build_bundle(
        default_constitution(), data.train_texts, data.train_labels, data.cal_texts,
        data.out_texts, data.out_labels, data.cal_out, target_fpr=TARGET_FPR,
        input_params={"epochs": 30}, version=2, parent_version=1, notes="test bundle")


@pytest.fixture(scope="module")
def saved(bundle: GuardBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(bundle, tmp_path_factory.mktemp("bundles") / "v2")


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    """A private copy of the saved bundle, safe to tamper with."""
    return Path(shutil.copytree(saved, tmp_path / "b"))


# ---- build and calibration ----------------------------------------------------------------
def test_calibration_fpr_at_most_target(bundle: GuardBundle, data: Data) -> None:
    t_in, t_out = bundle.thresholds["input"], bundle.thresholds["output"]
    fpr_in = float(np.mean(bundle.input.predict_proba(data.cal_texts) >= t_in))
    out = [stream_max_score(bundle.output, t, None, bundle.stream_chunk_chars)
           for t in data.cal_out]
    fpr_out = float(np.mean(np.array(out) >= t_out))
    assert fpr_in <= TARGET_FPR and fpr_out <= TARGET_FPR
    assert bundle.metrics["input"]["calibration_fpr"] == pytest.approx(fpr_in)
    assert bundle.metrics["output"]["calibration_fpr"] == pytest.approx(fpr_out)
    assert bundle.metrics["input"]["calibration_n"] == len(data.cal_texts)
    assert 0.0 <= t_in <= 1.0 and 0.0 <= t_out <= 1.0
    # The classifiers are useful, not just calibrated: most harmful training texts flagged.
    assert bundle.metrics["input"]["train_tpr"] > 0.8
    assert bundle.metrics["output"]["train_tpr"] > 0.8


def test_build_rejects_bad_arguments(data: Data) -> None:
    args = (default_constitution(), data.train_texts, data.train_labels, data.cal_texts,
            data.out_texts, data.out_labels)
    with pytest.raises(ValueError, match="must not be empty"):
        build_bundle(*args, [])
    with pytest.raises(ValueError, match="target_fpr"):
        build_bundle(*args, data.cal_out, target_fpr=1.5)
    with pytest.raises(KeyError, match="unknown classifier"):
        build_bundle(*args, data.cal_out, backend="nope", output_backend="ngram-stream")


# ---- save and load ------------------------------------------------------------------------
def test_round_trip_gives_identical_scores(bundle: GuardBundle, saved: Path,
                                           data: Data) -> None:
    loaded = load_bundle(saved)
    assert loaded.thresholds == bundle.thresholds
    assert (loaded.version, loaded.parent_version, loaded.notes, loaded.created) == (
        2, 1, "test bundle", bundle.created)
    assert loaded.target_fpr == TARGET_FPR and loaded.metrics == bundle.metrics
    assert loaded.constitution.content_hash() == bundle.constitution.content_hash()
    texts = [data.hazard_prompt, data.utility_prompt, *data.cal_texts[:20]]
    np.testing.assert_array_equal(loaded.input_scores(texts), bundle.input_scores(texts))
    for reply in (data.hazard_answer, data.utility_reply, *data.cal_out[:5]):
        assert loaded.output_score(reply) == bundle.output_score(reply)


def test_bundle_json_lists_every_file(saved: Path, bundle: GuardBundle) -> None:
    meta = json.loads((saved / "bundle.json").read_text())
    assert meta["format"] == "swisscheese.guard_bundle" and meta["format_version"] == 3
    assert meta["categories"] is None  # no category scorer in this bundle
    assert meta["training"] == {"recipe": "manual", "seed": 0, "data": {},
                                "heldout_families": [], "config": {}}
    assert meta["constitution_hash"] == bundle.constitution.content_hash()
    assert meta["parent_version"] == 1 and meta["version"] == 2
    assert {"constitution.yaml", "input/config.json", "input/weights.npz",
            "output/config.json", "output/weights.npz"} == set(meta["files"])
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_tampered_weights_named(copy: Path) -> None:
    w = copy / "input" / "weights.npz"
    raw = bytearray(w.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"input/weights\.npz.*sha256"):
        load_bundle(copy)


def test_edited_constitution_named(copy: Path) -> None:
    c = copy / "constitution.yaml"
    c.write_text(c.read_text().replace("description:", "description:  ", 1))
    with pytest.raises(BundleError, match=r"constitution\.yaml"):
        load_bundle(copy)


def test_constitution_hash_checked_even_with_matching_sha(copy: Path) -> None:
    # Someone edits the constitution and updates the file's sha256 too: the recorded
    # constitution hash still catches it.
    c = copy / "constitution.yaml"
    text = c.read_text()
    first_line = text.splitlines()[0]
    assert first_line.startswith("name:")
    c.write_text(text.replace(first_line, "name: edited-constitution", 1))
    meta_path = copy / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["constitution.yaml"] = hashlib.sha256(c.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"constitution\.yaml: constitution hash"):
        load_bundle(copy)


def _edit_meta(path: Path, fn: Any) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(thresholds={"input": 1.5, "output": 0.5}), "thresholds"),
    (lambda m: m.update(thresholds={"input": 0.5}), "thresholds"),
    (lambda m: m.update(format="something-else"), "format"),
    (lambda m: m.update(format_version=99), "format_version"),
    (lambda m: m.pop("metrics"), "missing keys metrics"),
    (lambda m: m.update(version=0), "version"),
    (lambda m: m.update(parent_version=5), "parent_version"),
    (lambda m: m.update(created="yesterday"), "created"),
    (lambda m: m["files"].pop("input/weights.npz"), r"input/weights\.npz: not listed"),
    (lambda m: m.pop("training"), "missing keys training"),
    (lambda m: m.update(training=[]), "'training' must be an object"),
    (lambda m: m["training"].pop("recipe"), "'training' lacks recipe"),
    (lambda m: m["training"].update(seed="0"), "training.seed must be an integer, got '0'"),
    (lambda m: m["training"].update(data=3), "training.data must be an object"),
    (lambda m: m["training"].update(heldout_families=[1]), "training.heldout_families"),
    (lambda m: m["training"].update(extra=1), "'training' has unknown fields extra"),
])
def test_bad_bundle_json_named(copy: Path, edit: Any, message: str) -> None:
    _edit_meta(copy / "bundle.json", edit)
    with pytest.raises(BundleError, match=r"bundle\.json|not listed") as e:
        load_bundle(copy)
    assert e.match(message)


def _as_format_1(meta: dict[str, Any], **record: Any) -> None:
    """bundle.json as code before the training record wrote it: its fields in metrics."""
    t = meta.pop("training")
    meta.pop("categories")
    meta["format_version"] = 1
    if t["recipe"] != "manual":
        meta["metrics"].update(preset=t["recipe"], seed=t["seed"], data=t["data"],
                               heldout_families=t["heldout_families"], config=t["config"])
    meta["metrics"].update(record)


def test_a_format_1_bundle_loads_with_its_record(copy: Path) -> None:
    _edit_meta(copy / "bundle.json", _as_format_1)
    old = load_bundle(copy)
    assert old.training.is_manual and "preset" not in old.metrics
    _edit_meta(copy / "bundle.json", lambda m: m["metrics"].update(
        preset="organism", seed=7, heldout_families=["morse"], config={"augment": 2},
        data={"dir": "d"}))
    old = load_bundle(copy)
    assert (old.training.recipe, old.training.seed, old.training.heldout_families,
            old.training.config, old.training.data) == (
        "organism", 7, ("morse",), {"augment": 2}, {"dir": "d"})
    assert not {"preset", "seed", "heldout_families", "config", "data"} & set(old.metrics)


def test_a_format_2_bundle_loads_without_categories(copy: Path) -> None:
    def as_format_2(meta: dict[str, Any]) -> None:
        meta.pop("categories")
        meta["format_version"] = 2

    _edit_meta(copy / "bundle.json", as_format_2)
    old = load_bundle(copy)
    assert old.categories is None and old.category_scores(["x"]) == [{}]
    # A format-2 bundle.json that names categories is not a format-2 bundle.
    _edit_meta(copy / "bundle.json", lambda m: m.update(categories=None))
    with pytest.raises(BundleError, match="unknown keys categories"):
        load_bundle(copy)


def test_a_format_1_bundle_with_a_bad_record_names_the_field(copy: Path) -> None:
    _edit_meta(copy / "bundle.json", lambda m: _as_format_1(m, preset="organism", seed="x"))
    with pytest.raises(BundleError, match=r"bundle\.json: metrics\.seed must be an integer, "
                                          r"got 'x' \(a format-1 bundle; retrain"):
        load_bundle(copy)


def test_unreadable_bundle_json_and_missing_dir(copy: Path, tmp_path: Path) -> None:
    (copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"bundle\.json: not readable JSON"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nowhere")


def test_unlisted_file_rejected(copy: Path) -> None:
    (copy / "output" / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"output/extra\.bin: not listed"):
        load_bundle(copy)


def test_refuses_to_overwrite(bundle: GuardBundle, saved: Path, tmp_path: Path) -> None:
    target = Path(shutil.copytree(saved, tmp_path / "b"))
    before = (target / "bundle.json").read_bytes()
    with pytest.raises(BundleError, match="not empty"):
        save_bundle(bundle, target)
    assert (target / "bundle.json").read_bytes() == before
    save_bundle(bundle, target, overwrite=True)
    assert load_bundle(target).thresholds == bundle.thresholds
    empty = tmp_path / "empty"
    empty.mkdir()
    save_bundle(bundle, empty)  # an empty directory is not "overwriting"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "empty"]  # no temp leftovers


def test_save_rejects_bad_fields(bundle: GuardBundle, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="parent_version"):
        save_bundle(replace(bundle, parent_version=2), tmp_path / "x")
    with pytest.raises(BundleError, match="thresholds"):
        save_bundle(replace(bundle, thresholds={"input": -0.1, "output": 0.5}), tmp_path / "x")
    assert not list(tmp_path.iterdir())


# ---- classify files -----------------------------------------------------------------------
def _rows(data: Data) -> list[dict[str, Any]]:
    return [
        {"id": 1, "prompt": data.hazard_prompt, "response": data.hazard_answer,
         "meta": {"source": "test"}},
        {"id": 2, "prompt": data.utility_prompt, "response": data.utility_reply},
        {"id": 3, "prompt": data.utility_prompt},
    ]


def _score_ok(x: Any) -> bool:
    return isinstance(x, float | int) and 0.0 <= x <= 1.0 and round(x, 6) == x


def test_classify_jsonl(bundle: GuardBundle, data: Data, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(data)))
    summary = classify_file(bundle, src, dst)
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(out) == 3 and summary.rows == 3 and summary.responses == 2
    for before, after in zip(_rows(data), out, strict=True):
        assert {k: after[k] for k in before} == before  # every original field kept
        assert _score_ok(after["input_score"])
    assert _score_ok(out[0]["output_score"]) and _score_ok(out[1]["output_score"])
    assert "output_score" not in out[2]
    assert [r["flagged"] for r in out] == [True, False, False]
    assert out[0]["input_score"] >= bundle.thresholds["input"]
    assert summary.flagged == 1 and summary.mean_output_score is not None


def test_classify_csv(bundle: GuardBundle, data: Data, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "prompt", "response", "note"])
        w.writeheader()
        w.writerow({"id": "1", "prompt": data.hazard_prompt, "response": data.hazard_answer,
                    "note": "a, quoted \"note\""})
        w.writerow({"id": "2", "prompt": data.utility_prompt, "response": "", "note": ""})
    summary = classify_file(bundle, src, dst)
    with dst.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["id", "prompt", "response", "note", "input_score",
                                 "output_score", "flagged"]
    assert rows[0]["note"] == "a, quoted \"note\"" and rows[0]["response"] == data.hazard_answer
    assert [r["flagged"] for r in rows] == ["true", "false"]
    assert _score_ok(float(rows[0]["output_score"])) and rows[1]["output_score"] == ""
    assert summary.rows == 2 and summary.responses == 1


def test_csv_without_prompt_lists_columns(bundle: GuardBundle, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("question,answer\nhi,there\n")
    with pytest.raises(ClassifyError, match=r"no 'prompt' column.*'question', 'answer'"):
        classify_file(bundle, src, dst)
    assert list(tmp_path.iterdir()) == [src]  # nothing written, no temp file left


@pytest.mark.parametrize(("line3", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"question": "hi"}', r"no 'prompt' or 'messages' field \(fields: question\)"),
    ('{"prompt": 3}', "'prompt' must be a string"),
])
def test_bad_jsonl_line_named(bundle: GuardBundle, tmp_path: Path, line3: str,
                              message: str) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"prompt": "What is 2 plus 3?"}\n{"prompt": "Spell cat."}\n' + line3 + "\n")
    with pytest.raises(ClassifyError, match=rf"in\.jsonl:3: {message}"):
        classify_file(bundle, src, dst)
    assert list(tmp_path.iterdir()) == [src]


def test_unknown_extension_lists_supported(bundle: GuardBundle, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    with pytest.raises(ClassifyError, match=r"\.jsonl, \.json-lines, \.csv"):
        classify_file(bundle, src, tmp_path / "out.txt")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"prompt": "hi"}\n')
    with pytest.raises(ClassifyError, match="output has the input's format"):
        classify_file(bundle, jsonl, tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "in.txt"]


# ---- CLI ----------------------------------------------------------------------------------
def test_cli_classify(saved: Path, data: Data, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(data)))
    runner = CliRunner()
    result = runner.invoke(classify_app, ["--bundle", str(saved), "--input", str(src),
                                          "--output", str(dst)])
    assert result.exit_code == 0, result.output
    assert "flagged" in result.output and "rows" in result.output and dst.is_file()

    # Registered on another app under "classify", as the main CLI does.
    app = typer.Typer()
    app.command("classify")(classify)
    app.command("other")(lambda: None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1]\n")
    result = runner.invoke(app, ["classify", "--bundle", str(saved), "--input", str(bad),
                                 "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1
    assert "bad.jsonl:1" in result.output and not (tmp_path / "o.jsonl").exists()
    result = runner.invoke(app, ["classify", "--bundle", str(tmp_path), "--input", str(src),
                                 "--output", str(dst)])
    assert result.exit_code == 1 and "bundle.json" in result.output


def test_build_reports_each_phase_and_samples_the_training_figures(
        data: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    import swisscheese.bundles.build as build

    monkeypatch.setattr(build, "TRAIN_FIGURE_N", 5)
    seen: list[tuple[str, int, int]] = []
    b = build_bundle(
        default_constitution(), data.train_texts, data.train_labels, data.cal_texts,
        data.out_texts, data.out_labels, data.cal_out, target_fpr=TARGET_FPR,
        input_params={"epochs": 5},
        progress=lambda phase, done, total, figures=None: seen.append((phase, done, total)))
    phases = [p for p, _, _ in seen]
    for phase in ("fit input", "fit output", "calibrate input", "calibrate output",
                  "training figures"):
        assert phase in phases
    ends = {p: (d, t) for p, d, t in seen}
    assert ends["calibrate output"] == (len(data.cal_out), len(data.cal_out))
    assert ends["training figures"] == (5, 5)
    assert b.metrics["input"]["train_tpr_n"] == b.metrics["output"]["train_tpr_n"] == 5
    assert b.input.progress is None and b.output.progress is None  # not kept after the build
