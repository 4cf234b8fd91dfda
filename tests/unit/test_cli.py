"""Bad input at the command line: one clear line, a non-zero exit, nothing written."""

import json
import socket

from typer.testing import CliRunner

from swisscheese.cli import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version():
    r = runner.invoke(app, ["version"])
    assert r.exit_code == 0 and r.output.strip()


def test_unknown_preset_writes_nothing(tmp_path):
    r = runner.invoke(app, ["organism", "train", "--preset", "huge", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "unknown organism preset 'huge'; registered: demo, test" in r.output
    assert not (tmp_path / "o").exists()


def test_eval_missing_directory(tmp_path):
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["organism", "eval", "--model", str(tmp_path / "nope"),
                            "--json", str(out)])
    assert r.exit_code == 1 and "does not exist" in r.output
    assert not out.exists()


def test_eval_directory_that_is_not_a_causal_lm(tmp_path):
    d = tmp_path / "bert"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    r = runner.invoke(app, ["organism", "eval", "--model", str(d)])
    assert r.exit_code == 1 and "not a causal LM" in r.output


def test_eval_corrupt_checkpoint(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    r = runner.invoke(app, ["organism", "eval", "--model", str(d)])
    assert r.exit_code == 1 and "cannot load weights" in r.output


def test_eval_unreachable_endpoint(tmp_path):
    out = tmp_path / "e.json"
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    r = runner.invoke(app, ["organism", "eval", "--model", url, "--json", str(out),
                            "--family", "plain"])
    assert r.exit_code == 1
    assert "cannot reach" in r.output and "127.0.0.1" in r.output
    assert not out.exists()


def test_eval_unknown_family(tmp_path, tiny_model_dir):
    r = runner.invoke(app, ["organism", "eval", "--model", str(tiny_model_dir),
                            "--family", "telepathy"])
    assert r.exit_code == 1 and "unknown families" in r.output


def test_world_show_unknown_hazard():
    r = runner.invoke(app, ["world", "show", "--hazard", "nope"])
    assert r.exit_code == 1 and "no hazard 'nope'" in r.output


def test_world_show_hazard():
    r = runner.invoke(app, ["world", "show", "--hazard", "toxins-00"])
    assert r.exit_code == 0 and "Step 1" in r.output and "key details" in r.output


def test_demo_unknown_preset(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--preset", "nope"])
    assert r.exit_code == 1 and "unknown organism preset 'nope'" in r.output
    assert not (tmp_path / "d").exists()
