"""Campaign configs: YAML in, clear errors listing the registered names, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from swisscheese.cli import app
from swisscheese.redteam.config import ConfigError, config_from_dict, load_config
from swisscheese.redteam.presets import ORGANISM_TARGETS, get_preset

runner = CliRunner()
GOOD = {"behaviours": ["levels"], "attacks": ["plain"], "targets": ["aligned"]}


def test_a_good_config_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: t\nbase: runs/x\nbehaviours: [levels, {world: hazards, limit: 4}]\n"
                 "attacks: [plain, {name: best_of_n, label: bon, options: {n: 2}}]\n"
                 "targets: [aligned, {name: gw, model: 'http://127.0.0.1:1/v1#m'}]\n"
                 "judge: {name: llm, options: {judge_model: 'http://127.0.0.1:1/v1'}}\n")
    cfg = load_config(p)
    assert [a.key for a in cfg.attacks] == ["plain", "bon"]
    assert cfg.attacks[1].options == {"n": 2}
    assert cfg.targets[1].model == "http://127.0.0.1:1/v1#m"
    assert cfg.behaviours[1].limit == 4 and cfg.judge.name == "llm"
    # Concurrency does not change results, so it may change on resume.
    other = config_from_dict({**GOOD, "concurrency": 4})
    assert other.config_hash() == config_from_dict(GOOD).config_hash()
    assert config_from_dict({**GOOD, "seed": 1}).config_hash() != other.config_hash()


@pytest.mark.parametrize(("change", "match"), [
    ({"attacks": ["nope"]}, r"unknown attack 'nope'; registered: .*best_of_n.*plain"),
    ({"judge": "nope"}, r"unknown judge 'nope'; registered: classifier, detail, llm, refusal"),
    ({"targets": ["nope"]}, r"unknown target 'nope'; registered: helpful-only, aligned"),
    ({"targets": [{"name": "x", "model": "m", "guard": "middle"}]}, "unknown guard layer"),
    ({"behaviours": [{"world": "everything"}]}, r"behaviours\[0\]\.world: unknown set"),
    ({"behaviours": [{"limit": 3}]}, "exactly one of `world` or `file`"),
    ({"attacks": ["plain", "plain"]}, "appear\\(s\\) twice"),
    ({"attacks": [{"name": "plain", "colour": 1}]}, r"attacks\[0\]: unknown key\(s\) colour"),
    ({"concurrency": 0}, "concurrency must be >= 1"),
    ({"speed": 3}, r"unknown key\(s\) speed"),
])
def test_bad_configs_say_what_and_where(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({**GOOD, **change}, "c.yaml")


def test_cli_errors_write_nothing(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    out = tmp_path / "run"
    p.write_text("behaviours: [levels]\nattacks: [plain, gcgx]\ntargets: [aligned]\n")
    r = runner.invoke(app, ["redteam", "run", "--config", str(p), "--out", str(out)])
    assert r.exit_code == 1
    assert "unknown attack 'gcgx'; registered:" in r.output and "mismatched_generalization" \
        in r.output
    assert not out.exists()
    p.write_text("behaviours: [levels]\nattacks: [{name: roleplay, options: {personas: "
                 "[Nobody]}}]\ntargets: [aligned]\nbase: x\n")
    r = runner.invoke(app, ["redteam", "run", "--config", str(p), "--out", str(out)])
    assert r.exit_code == 1 and "unknown persona 'Nobody'" in r.output
    assert not out.exists()
    p.write_text("behaviours: [levels]\nattacks: [{name: plain, options: {speed: 2}}]\n"
                 "targets: [aligned]\n")
    r = runner.invoke(app, ["redteam", "run", "--config", str(p), "--out", str(out)])
    assert r.exit_code == 1 and "attack 'plain': unknown option 'speed'" in r.output
    p.write_text("behaviours: [levels]\nattacks: [plain]\ntargets: [aligned+input]\nbase: x\n")
    r = runner.invoke(app, ["redteam", "run", "--config", str(p), "--out", str(out)])
    assert r.exit_code == 1 and "needs a guard bundle" in r.output
    r = runner.invoke(app, ["redteam", "run", "--out", str(out)])
    assert r.exit_code == 1 and "exactly one of --config or --preset" in r.output
    r = runner.invoke(app, ["redteam", "run", "--preset", "huge", "--out", str(out)])
    assert r.exit_code == 1 and "unknown campaign preset 'huge'; registered: organism" in r.output
    assert not out.exists()


def test_the_organism_preset_is_valid() -> None:
    cfg = get_preset("organism", base="b", bundle="g")
    cfg.validate()
    assert tuple(t.name for t in cfg.targets) == ORGANISM_TARGETS
    assert (cfg.base, cfg.bundle, cfg.judge.name) == ("b", "g", "detail")
    assert {"plain", "converters", "best_of_n", "dan", "many_shot"} <= {a.name
                                                                      for a in cfg.attacks}


def test_each_layer_alone_and_a_second_bundle_as_its_own_target(tmp_path: Path) -> None:
    from swisscheese.redteam.targets import TargetSpec

    assert {"aligned+input", "aligned+output", "aligned+input+output"} <= set(ORGANISM_TARGETS)
    assert TargetSpec("aligned+output").layers() == ("output",)
    cfg = get_preset("organism", base="b", bundle="g", exchange_bundle="ex")
    arm = cfg.targets[-1]
    assert (arm.name, arm.model, arm.guard, arm.bundle) == (
        "aligned+input+exchange", "aligned", "input+output", "ex")
    assert arm.model_spec("b") == str(Path("b") / "aligned")
    both = get_preset("organism", base="b", bundle="g", exchange_bundle="ex",
                      reply_bundle="re").targets
    assert [(t.name, t.bundle) for t in both[-2:]] == [("aligned+input+reply", "re"),
                                                       ("aligned+input+exchange", "ex")]
    assert {"template_file", "crescendo"} <= {a.name for a in cfg.attacks}
    p = tmp_path / "c.yaml"
    p.write_text("behaviours: [levels]\nattacks: [plain]\ntargets: [aligned, {name: x, "
                 "model: aligned, guard: input+output, bundle: other/bundle}]\n")
    t = load_config(p).targets[1]
    assert (t.bundle, t.model_spec("base")) == ("other/bundle", str(Path("base") / "aligned"))
    with pytest.raises(ConfigError, match=r"targets\[0\]: unknown key\(s\) bundel; keys: "
                                          r"name, model, guard, bundle"):
        config_from_dict({**GOOD, "targets": [{"name": "x", "bundel": "b"}]})
