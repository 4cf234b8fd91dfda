"""The safety matrix end to end on the `test` organism, quick sizes; then it resumes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from swisscheese.training.matrix import UNDO, MatrixConfig, run_matrix

pytestmark = pytest.mark.slow


def test_quick_matrix_writes_every_row_and_resumes(organism_dir, tmp_path):
    out = tmp_path / "matrix"
    # Two defences keep the test short; every trainer has its own unit test, and
    # `--quick` on the CLI runs all five.
    defences = ("sft", "cat")
    cfg = replace(MatrixConfig.quick(), defences=defences)
    result = run_matrix(out, organism_dir, cfg)

    variants = [r["variant"] for r in result["rows"]]
    defended = ["aligned", *defences]
    assert variants == ["helpful-only", *defended,
                        *(f"{d}+{u}" for d in defended for u in UNDO)]
    for r in result["rows"]:
        for key in ("utility", "refusal", "overrefusal", "embedding_asr", "gcg_asr"):
            assert 0.0 <= r[key] <= 1.0, (r["variant"], key)
        assert set(r["asr"]) == set(cfg.families)
    cards = {d: json.loads((out / "models" / d / "swisscheese.json").read_text())
             for d in defences}
    assert all(c["parent"] == str((organism_dir / "helpful-only").resolve())
               for c in cards.values())
    wo = json.loads((out / "models" / "cat+wo" / "swisscheese.json").read_text())
    assert wo["orthogonalized"]["direction_file"] == str(out / "directions" / "cat")
    assert result["cost"]["cat_step_seconds"] > 0 and result["cost"]["gcg_step_seconds"] > 0
    assert {t["name"] for t in result["targets"]} >= {"cat embedding-attack ASR vs sft",
                                                      "cat over-refusal"}
    md = (out / "matrix.md").read_text()
    assert all(f"| {v} |" in md for v in variants)
    assert json.loads((out / "matrix.json").read_text())["rows"] == result["rows"]

    again = run_matrix(out, organism_dir, cfg)
    assert again["stages_run_now"] == []
    assert again["rows"] == result["rows"]

    with pytest.raises(ValueError, match="another config"):
        run_matrix(out, organism_dir, replace(cfg, epsilon=cfg.epsilon * 2))
