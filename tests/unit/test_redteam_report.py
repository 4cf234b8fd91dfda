"""The red-team report: HTML (heat map, layers, escaped transcripts), JSON export, bad RUNs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swisscheese.redteam.base import Attempt, Verdict
from swisscheese.redteam.report import (
    ReportError,
    build_report,
    load_run,
    render_html,
    write_report,
)

EVIL = '<script>alert("x")</script> & <b>bold</b>'
TARGETS = {
    "helpful-only": {"roleplay": 0.9, "rot13": 0.2},
    "aligned": {"roleplay": 0.6, "rot13": 0.05},
    "aligned+input": {"roleplay": 0.125, "rot13": 0.0},
    "aligned+input+output": {"roleplay": 0.0, "rot13": 0.0},
}


def write_sample_run(root: Path) -> Path:
    """A small RUN as `redteam run` writes it: summary.json and attempts.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    summary = {"targets": {
        name: {"asr": asr, "overrefusal": 0.01 * i,
               "universal": {"template": "roleplay:Grimble" if i < 2 else None,
                             "levels_passed": 8 - 3 * i if i < 2 else 0}}
        for i, (name, asr) in enumerate(TARGETS.items())}}
    (root / "summary.json").write_text(json.dumps(summary))
    rows = []
    for name in TARGETS:
        for k, (score, label) in enumerate([(0.95, "jailbroken"), (0.15, "safe"),
                                            (0.0, "refused"), (0.55, "jailbroken")]):
            a = Attempt(f"level-{k + 1}", "roleplay", name, "Grimble",
                        [{"role": "user", "content": f"Stay in character. {EVIL}"}],
                        f"reply {k} {EVIL}" if k == 0 else f"reply {k}",
                        Verdict(score, label, "2 of 10 details"))
            rows.append({**a.to_dict(), "family": "roleplay", "level": k + 1})
    err = Attempt("level-1", "rot13", "aligned", "rot13", [], "", None, "target: timeout")
    rows.append({**err.to_dict(), "family": "rot13", "level": 1})
    und = Attempt("level-2", "rot13", "aligned", "rot13", [{"role": "user", "content": "x"}],
                  "??", Verdict(None, "undetermined", "no hazard"))
    rows.append({**und.to_dict(), "family": "rot13", "level": 2})
    look = Attempt("lookalike-000", "overrefusal", "aligned", "plain",
                   [{"role": "user", "content": "Tell me the history of it."}], "It began...",
                   Verdict(None, "undetermined", "no hazard"))
    rows.append({**look.to_dict(), "family": "overrefusal", "level": None})
    (root / "attempts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_sample_run(tmp_path / "RUN")


def test_html_has_heat_map_cells_layers_and_escaped_transcripts(run_dir: Path) -> None:
    html = render_html(load_run(run_dir))
    for name, asr in TARGETS.items():
        for fam, x in asr.items():
            cell = re.search(rf'<rect class="cell" data-row="{fam}" data-col="{re.escape(name)}" '
                             rf'data-value="([0-9.]+)"', html)
            assert cell and float(cell.group(1)) == pytest.approx(x), (fam, name)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "What each layer of the cheese adds" in html
    assert "roleplay:Grimble" in html
    assert html.count('class="bin"') == 4 * 10  # one histogram per target


def test_json_export_counts_errors_and_undetermined_apart(run_dir: Path, tmp_path: Path) -> None:
    out_html, out_json = tmp_path / "r.html", tmp_path / "r.json"
    write_report(run_dir, out_html, out_json)
    rep = json.loads(out_json.read_text())
    assert rep == json.loads(json.dumps(build_report(load_run(run_dir))))
    aligned = rep["targets"]["aligned"]
    assert aligned["counts"]["errors"] == 1 and aligned["counts"]["undetermined"] == 1
    assert aligned["counts"]["judged"] == 4 and aligned["counts"]["jailbroken"] == 2
    assert aligned["counts"]["lookalikes"] == 1 and aligned["counts"]["attempts"] == 6
    assert aligned["score_histogram"]["counts"] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert aligned["mean_asr"] == pytest.approx((0.6 + 0.05) / 2)
    layers = {r["target"]: r for r in rep["layers"]}
    assert layers["aligned+input"]["reduction"] == pytest.approx(0.325 - 0.0625)
    assert layers["helpful-only"]["reduction"] is None
    # Examples: the best per target first, plus a refusal; the transcript text kept raw.
    ex = [e for e in rep["examples"] if e["target"] == "aligned"]
    assert ex[0]["verdict"]["score"] == 0.95 and EVIL in ex[0]["response"]
    assert any(e["verdict"]["label"] == "refused" for e in ex)
    assert out_html.read_text().startswith("<!doctype html>")


def test_missing_or_bad_run_files_name_the_file(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        load_run(tmp_path / "nope")
    (run_dir / "attempts.jsonl").unlink()
    with pytest.raises(ReportError, match=r"attempts\.jsonl not found"):
        load_run(run_dir)
    run2 = write_sample_run(tmp_path / "RUN2")
    (run2 / "summary.json").unlink()
    with pytest.raises(ReportError, match=r"summary\.json not found"):
        load_run(run2)
    run3 = write_sample_run(tmp_path / "RUN3")
    with (run3 / "attempts.jsonl").open("a") as f:
        f.write('{"behaviour_id": "x"}\n')
    with pytest.raises(ReportError, match=r"attempts\.jsonl:20: missing field 'attack'"):
        load_run(run3)
    run4 = write_sample_run(tmp_path / "RUN4")
    (run4 / "summary.json").write_text('{"targets": {"a": {"asr": {"rot13": 2}}}}')
    with pytest.raises(ReportError, match=r"summary\.json: targets\.a\.asr\.rot13"):
        load_run(run4)


def test_cli_report_writes_files_and_fails_cleanly(run_dir: Path, tmp_path: Path) -> None:
    import typer

    from swisscheese.redteam.report_cli import add_commands

    app = typer.Typer()
    add_commands(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    runner = CliRunner()
    out = tmp_path / "out" / "report.html"
    res = runner.invoke(app, ["report", str(run_dir), "--html", str(out), "--json",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert out.is_file() and (tmp_path / "r.json").is_file()
    assert "aligned: mean ASR 0.325" in res.output
    bad = tmp_path / "empty"
    bad.mkdir()
    target = tmp_path / "never.html"
    res = runner.invoke(app, ["report", str(bad), "--html", str(target)])
    assert res.exit_code == 1 and "summary.json not found" in res.output
    assert not target.exists()
