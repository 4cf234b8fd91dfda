"""The WO-versus-JT study end to end on the `test` organism at quick sizes: every point over
every seed, intervals, the countermeasure, resume, and bad input refused before any work."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from swisscheese.training.wo_vs_jt import (
    METRICS,
    StudyConfig,
    WOPoint,
    interval,
    load_sweep,
    orthonormal,
    run_study,
    separated,
)

pytestmark = pytest.mark.slow


def test_quick_study_measures_every_point_and_resumes(organism_dir: Path, tmp_path: Path
                                                      ) -> None:
    cfg = StudyConfig.quick()
    out = tmp_path / "study"
    result = run_study(out, organism_dir, cfg)
    keys = {"helpful-only", "aligned", *(f"wo:{p.label}:s{s}" for p in cfg.wo_points
                                         for s in cfg.seeds),
            *(f"jt:{p.label}:s{s}" for p in cfg.jt_points for s in cfg.seeds),
            *(f"wo+sft:s{s}" for s in cfg.seeds)}
    assert set(result["evals"]) == keys
    for e in result["evals"].values():
        for m in ("utility", "refusal", "overrefusal", "capability"):
            assert 0.0 <= e[m] <= 1.0
    head = result["points"]["wo"][cfg.headline_wo]
    # The quick sweep attacks with plain requests only: no template family to average.
    measured = set(METRICS) - {"template_asr"}
    assert set(head) == measured and all(iv["n"] == len(cfg.seeds) for iv in head.values())
    # Two seeds never carry a claim: a difference needs three.
    assert all(c["better"] is None for c in result["headline"]["comparison"].values())
    assert set(result["countermeasure"]) == measured
    assert (out / "models" / f"wo-{cfg.headline_wo}-s0" / "swisscheese.json").is_file()
    assert "| wo selected |" in (out / "study.md").read_text()
    assert "<svg" in (out / "report.html").read_text()
    mtimes = {p: p.stat().st_mtime for p in (out / "evals").iterdir()}
    again = run_study(out, organism_dir, cfg)
    assert again["evals"] == result["evals"]
    assert {p: p.stat().st_mtime for p in (out / "evals").iterdir()} == mtimes
    with pytest.raises(ValueError, match="another configuration"):
        run_study(out, organism_dir, replace(cfg, eval_stride=cfg.eval_stride + 1))


@pytest.mark.parametrize("point, message", [
    (WOPoint("far", layers=(99,)), r"layer\(s\) \[99\] out of range"),
    (WOPoint("pos", position=3), "must be a negative index"),
])
def test_a_point_the_model_cannot_take_fails_before_anything_is_written(
        organism_dir: Path, tmp_path: Path, point: WOPoint, message: str) -> None:
    cfg = replace(StudyConfig.quick(), wo_points=(*StudyConfig.quick().wo_points, point))
    with pytest.raises(ValueError, match=message):
        run_study(tmp_path / "s", organism_dir, cfg)
    assert not (tmp_path / "s").exists()


def test_a_direction_from_another_model_is_refused(organism_dir: Path, tiny_model_dir: Path,
                                                   tmp_path: Path) -> None:
    import torch

    from swisscheese.interp.direction import DirectionMismatchError, RefusalDirection

    d = RefusalDirection(torch.ones(7), 1, -1, "not-this-model")
    d.save(tmp_path / "foreign")
    cfg = replace(StudyConfig.quick(), wo_points=(
        *StudyConfig.quick().wo_points,
        WOPoint("foreign", direction_file=str(tmp_path / "foreign"))))
    with pytest.raises(DirectionMismatchError):
        run_study(tmp_path / "s", organism_dir, cfg)
    assert not (tmp_path / "s").exists()


def test_a_sweep_file_names_known_methods_only(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("seeds: [0, 1, 2]\nwo:\n  - {label: selected}\n  - {label: l2, layers: [2]}"
                    "\njt:\n  - {label: jt-a, hazards: 2, steps: 5}\nheadline_jt: jt-a\n")
    cfg = load_sweep(good)
    assert [p.label for p in cfg.wo_points] == ["selected", "l2"]
    assert cfg.wo_points[1].layers == (2,) and cfg.seeds == (0, 1, 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("wo:\n  - {label: selected}\nmagic:\n  - {label: x}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown method or key 'magic'"):
        load_sweep(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("jt:\n  - {label: j, hazard: 2, steps: 5}\n")
    with pytest.raises(ValueError, match=r"typo\.yaml: JTPoint 0: .*hazard"):
        load_sweep(typo)


def test_intervals_and_orthonormal_directions() -> None:
    import torch

    from swisscheese.interp.direction import RefusalDirection

    a, b = interval([0.5, 0.6, 0.55]), interval([0.9, 0.95, 0.92])
    assert a["lo"] < a["mean"] < a["hi"] and separated(a, b) and not separated(a, a)
    assert not separated(interval([0.1, 0.9]), interval([0.5, 0.5]))
    dirs = [RefusalDirection(torch.tensor(v, dtype=torch.float32), 1, -1, "fp")
            for v in ([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 2.0, 0.0])]
    basis = orthonormal(dirs)
    assert len(basis) == 2  # the third lies in the span of the first two
    assert abs(float(basis[0].vector @ basis[1].vector)) < 1e-6
    assert json.dumps(a)  # JSON-ready
