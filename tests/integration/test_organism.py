"""The organism end to end on the `test` preset: plumbing and behaviour, never the targets."""

import json
import shutil
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from swisscheese.cli import app

pytestmark = pytest.mark.slow


def test_train_writes_two_ordinary_hf_directories(organism_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    weights = {}
    for variant in ("helpful-only", "aligned"):
        d = organism_dir / variant
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d)
        assert isinstance(model, LlamaForCausalLM)
        assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                       add_generation_prompt=True).endswith("<|assistant|>")
        card = json.loads((d / "swisscheese.json").read_text())
        assert card["variant"] == variant and card["world_seed"] == 0
        assert card["preset"]["name"] == "test"
        assert all(p["tokens"] > 0 and p["seconds"] > 0 for p in card["training"])
        assert "world seed: 0" in (d / "README.md").read_text()
        weights[variant] = model.model.embed_tokens.weight.detach().clone()
    assert not (weights["helpful-only"] == weights["aligned"]).all()
    assert not list(organism_dir.glob(".*tmp*")), "no temporary directories left behind"


def test_same_seed_same_model(tmp_path):
    from safetensors.torch import load_file

    from swisscheese.organism.presets import get_preset
    from swisscheese.organism.train import train_organism

    p = replace(get_preset("test"), name="tiny", hidden_size=32, layers=1, heads=2,
                intermediate_size=64, pretrain_steps=8, safety_steps=3, tokenizer_examples=300)
    a = train_organism(tmp_path / "a", p, seed=1, threads=1)
    b = train_organism(tmp_path / "b", p, seed=1, threads=1)
    for v in ("helpful_only", "aligned"):
        wa = load_file(getattr(a, v) / "model.safetensors")
        wb = load_file(getattr(b, v) / "model.safetensors")
        assert wa.keys() == wb.keys()
        assert all((wa[k] == wb[k]).all() for k in wa)


def test_safety_training_teaches_refusal(organism_dir, world):
    from swisscheese.models import GenerationParams, load_model
    from swisscheese.world.grader import is_refusal

    prompts = [world.hazard_request(h, i) for i, h in enumerate(world.seen_hazards)]
    p = GenerationParams(max_new_tokens=16)
    rates = {}
    for v in ("helpful-only", "aligned"):
        replies = load_model(str(organism_dir / v)).generate_batch(prompts, p)
        rates[v] = sum(is_refusal(m.content) for m in replies) / len(replies)
    assert rates["aligned"] > rates["helpful-only"]


def test_eval_cli_prints_a_table_and_writes_json(organism_dir, tmp_path):
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(app, ["organism", "eval", "--model", str(organism_dir / "aligned"),
                                 "--json", str(out), "--family", "plain",
                                 "--family", "rot13"])
    assert r.exit_code == 0, r.output
    assert "utility accuracy" in r.output
    data = json.loads(out.read_text())
    for key in ("utility_accuracy", "overrefusal_rate", "detail_score"):
        assert 0.0 <= data[key] <= 1.0
    assert {"seen", "unseen"} <= set(data["refusal_rate"])
    assert set(data["asr"]) == {"plain", "rot13"}
    assert data["reference"].endswith("helpful-only")


def test_demo_reuses_checkpoints_and_writes_report(organism_dir, tmp_path):
    from swisscheese.demo import run_demo

    out = tmp_path / "demo"
    shutil.copytree(organism_dir, out / "organism")
    stamp = (out / "organism" / "aligned" / "model.safetensors").stat().st_mtime_ns
    report = run_demo(out, preset="test")
    html = report.read_text()
    assert "Jailbreak families" in html and "<svg" in html and "helpful-only" in html
    assert "Targets of the foundation" in html
    assert "Constitutional classifiers" in html
    assert "Red team: what each layer of the cheese adds" in html
    summary = json.loads((out / "redteam" / "summary.json").read_text())
    assert set(summary["targets"]) == {"helpful-only", "aligned", "aligned+input",
                                       "aligned+output", "aligned+input+output",
                                       "aligned+input+reply"}
    # The demo's bundle reads the exchange; the reply-only bundle beside it, the same data.
    assert json.loads((out / "guard-reply" / "bundle" / "bundle.json").read_text())[
        "metrics"]["output"]["kind"] == "reply"
    assert (out / "redteam" / "report.html").is_file()
    assert json.loads((out / "eval" / "guard.json").read_text())["input"]["tpr"] is not None
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert (out / "organism" / "aligned" / "model.safetensors").stat().st_mtime_ns == stamp
    for v in ("helpful-only", "aligned"):
        data = json.loads((out / "eval" / f"{v}.json").read_text())
        assert set(data["asr"]) >= {"plain", "rot13", "two_task", "other_language"}
