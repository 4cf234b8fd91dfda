"""`recalibrate_bundle` / `swisscheese classifier calibrate`: both thresholds set on a large
benign file so the guarded system stays within the target FPR on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from swisscheese.bundles import BundleError, build_bundle, load_bundle, save_bundle
from swisscheese.bundles.build import stream_scores
from swisscheese.bundles.classify import ClassifyError
from swisscheese.bundles.recalibrate import min_texts, recalibrate_bundle
from swisscheese.classifiers.base import render_conversation
from swisscheese.cli import app
from swisscheese.constitution import default_constitution
from swisscheese.world import World

TARGET = 0.02  # 0.01 a layer: 100 texts each at least


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


@pytest.fixture(scope="module")
def bundle_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    attacks, look = world.eval_attacks("plain"), world.eval_lookalikes()
    util = world.eval_utility(60)
    benign = look[::2] + util[::2]
    b = build_bundle(
        default_constitution(), [e.prompt for e in attacks] + [e.prompt for e in benign],
        [1] * len(attacks) + [0] * len(benign), [e.prompt for e in look[1::2]],
        [h.answer() for h in world.hazards] + [e.reply for e in benign],
        [1] * len(world.hazards) + [0] * len(benign), [e.reply for e in look[1::2]],
        target_fpr=0.05, input_params={"epochs": 30}, version=3)
    return save_bundle(b, tmp_path_factory.mktemp("recal") / "v3")


def benign_rows(world: World) -> list[dict]:
    """Held-out benign traffic the bundle never saw as such: every look-alike and utility
    task, with the world's reply."""
    ex = world.eval_lookalikes() + world.eval_utility(160)
    return [{"messages": [{"role": "user", "content": e.prompt}], "response": e.reply}
            for e in ex]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_recalibrated_bundle_keeps_the_guarded_fpr_within_target(world, bundle_dir, tmp_path):
    rows = benign_rows(world)
    src = write_jsonl(tmp_path / "benign.jsonl", rows)
    rec = recalibrate_bundle(bundle_dir, src, tmp_path / "v4", target_fpr=TARGET)
    parent, new = load_bundle(bundle_dir), load_bundle(tmp_path / "v4")
    assert (new.version, new.parent_version) == (4, 3)
    assert new.thresholds == rec.after and rec.before == parent.thresholds
    assert new.target_fpr == TARGET and new.metrics["recalibration"]["n_input"] == len(rows)
    # Recomputed here from the new bundle's own classifiers and thresholds.
    convs = [r["messages"] for r in rows]
    s_in = new.input_scores([render_conversation(c) for c in convs])
    s_out = stream_scores(new.output, [r["response"] for r in rows], convs,
                          new.stream_chunk_chars, None, "")
    flag_in, flag_out = s_in >= new.thresholds["input"], s_out >= new.thresholds["output"]
    assert flag_in.mean() <= TARGET / 2 and flag_out.mean() <= TARGET / 2
    assert (flag_in | flag_out).mean() <= TARGET
    assert rec.fpr_guarded == pytest.approx(float((flag_in | flag_out).mean()))
    # Only the thresholds change: the classifiers score exactly as the parent's do.
    np.testing.assert_allclose(s_in, parent.input_scores(
        [render_conversation(c) for c in convs]))


def test_input_share_one_leaves_the_output_threshold(world, bundle_dir, tmp_path):
    rows = [{"prompt": r["messages"][0]["content"]} for r in benign_rows(world)]
    src = write_jsonl(tmp_path / "prompts.jsonl", rows)
    rec = recalibrate_bundle(bundle_dir, src, tmp_path / "v4", target_fpr=TARGET,
                             input_share=1.0)
    assert rec.after["output"] == load_bundle(bundle_dir).thresholds["output"]
    assert rec.fpr_output is None and rec.fpr_input <= TARGET


@pytest.mark.parametrize("case", ["few", "no_response", "target", "share", "malformed"])
def test_bad_input_fails_with_a_message_and_writes_nothing(case, world, bundle_dir, tmp_path):
    rows = benign_rows(world)
    kwargs = {"target_fpr": TARGET}
    if case == "few":
        rows = rows[:min_texts(TARGET / 2) - 1]
    elif case == "no_response":
        rows = [{"messages": r["messages"]} for r in rows]
    elif case == "target":
        kwargs["target_fpr"] = 1.5
    elif case == "share":
        kwargs["input_share"] = 0.0
    src = write_jsonl(tmp_path / "benign.jsonl", rows)
    if case == "malformed":
        src.write_text(src.read_text() + '{"messages": "hello"}\n')
    expected = {"few": r"at least 100 are needed", "no_response": r"no row has a 'response'",
                "target": r"target_fpr must be in", "share": r"input_share must be in",
                "malformed": r"benign\.jsonl:\d+: 'messages' must be"}[case]
    error = ClassifyError if case == "malformed" else ValueError
    with pytest.raises(error, match=expected):
        recalibrate_bundle(bundle_dir, src, tmp_path / "v4", **kwargs)
    assert not (tmp_path / "v4").exists()


def test_refuses_a_non_empty_out_dir(world, bundle_dir, tmp_path):
    src = write_jsonl(tmp_path / "benign.jsonl", benign_rows(world))
    (tmp_path / "v4").mkdir()
    (tmp_path / "v4" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty"):
        recalibrate_bundle(bundle_dir, src, tmp_path / "v4", target_fpr=TARGET)
    assert [p.name for p in (tmp_path / "v4").iterdir()] == ["keep.txt"]


def test_cli_writes_the_next_version_and_reports_errors_in_one_line(world, bundle_dir,
                                                                     tmp_path):
    src = write_jsonl(tmp_path / "benign.jsonl", benign_rows(world))
    runner = CliRunner()
    r = runner.invoke(app, ["classifier", "calibrate", "--bundle", str(bundle_dir),
                            "--benign", str(src), "--out", str(tmp_path / "v4"),
                            "--target-fpr", str(TARGET)])
    assert r.exit_code == 0, r.output
    assert "guarded (either)" in r.output and load_bundle(tmp_path / "v4").version == 4
    # What a user sees: the installed command prints the error as one line and exits 1.
    r2 = subprocess.run([str(Path(sys.executable).parent / "swisscheese"), "classifier",
                         "calibrate", "--bundle", str(bundle_dir), "--benign",
                         str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "v5")],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 1
    assert "none.jsonl: no such file" in r2.stderr + r2.stdout
    assert "Traceback" not in r2.stderr and not (tmp_path / "v5").exists()
