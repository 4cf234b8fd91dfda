"""Safety training: losses, data, the shared loop, every method's trainer, the CLI's errors."""

from __future__ import annotations

import json
import math

import pytest

from swisscheese.models import ModelLoadError
from swisscheese.training import losses
from swisscheese.training.capo import CAPOConfig
from swisscheese.training.cat import CATConfig
from swisscheese.training.countermeasure import verdict
from swisscheese.training.data import (
    Batcher,
    collate,
    compliance_examples,
    encode,
    harmful_items,
    preference_pairs,
)
from swisscheese.training.dpo import DPOConfig
from swisscheese.training.matrix import EvalSubset, MatrixConfig, render_markdown, targets
from swisscheese.training.methods import METHODS, get_method
from swisscheese.training.sft import SFTConfig, train_sft
from swisscheese.training.unlearn import UnlearnConfig
from swisscheese.world.grader import is_refusal

TINY = {"steps": 2, "batch_size": 2, "max_len": 96}


# ---- losses -------------------------------------------------------------------------------
def _t(*xs):
    import torch

    return torch.tensor(xs, dtype=torch.float)


def test_preference_losses_at_and_around_zero_margin():
    z = _t(0.0, 0.0)
    assert math.isclose(float(losses.dpo_loss(z, z, z, z, beta=0.1)), math.log(2), rel_tol=1e-6)
    better = losses.dpo_loss(_t(1.0, 1.0), z, z, z, beta=0.5)
    assert float(better) < math.log(2)
    # IPO is zero exactly at the margin 1 / (2 tau).
    assert float(losses.ipo_loss(_t(5.0), _t(0.0), _t(0.0), _t(0.0), tau=0.1)) == 0
    assert float(losses.ipo_loss(z, z, z, z, tau=0.1)) == pytest.approx(25.0)


def test_npo_pushes_down_and_saturates():
    import torch

    pol = torch.zeros(3, requires_grad=True)
    losses.npo_loss(pol, torch.zeros(3), beta=0.1).backward()
    assert torch.all(pol.grad > 0), "descending NPO lowers the forget likelihood"
    far = torch.full((3,), -200.0, requires_grad=True)
    losses.npo_loss(far, torch.zeros(3), beta=0.1).backward()
    assert float(far.grad.abs().max()) < 1e-6 * float(pol.grad.abs().max()) + 1e-8


def test_sft_loss_matches_transformers_and_ignores_padding(tiny_model_dir):
    import torch

    from swisscheese.training.trainer import load_for_training

    loaded = load_for_training(tiny_model_dir)
    tok = loaded.tokenizer
    rows = [encode(tok, "What is 2 plus 2?", "It is 4.", 64),
            encode(tok, "Name a colour of the sky on a clear summer day.", "Blue.", 64)]
    b = collate(rows, tok.pad_token_id)
    with torch.no_grad():
        out = loaded.model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                           labels=b.labels)
        ours = losses.sft_loss(out.logits, b.labels)
        assert float(ours) == pytest.approx(float(out.loss), rel=1e-5)
        alone = collate(rows[:1], tok.pad_token_id)
        lp_alone = losses.sequence_logps(loaded.model(input_ids=alone.input_ids).logits,
                                         alone.labels)
        lp_batch = losses.sequence_logps(out.logits, b.labels)
        assert float(lp_alone[0]) == pytest.approx(float(lp_batch[0]), abs=1e-4)
        assert float(losses.unlikelihood_loss(out.logits, b.labels)) > 0
        assert float(losses.gradient_ascent_loss(out.logits, b.labels)) == pytest.approx(
            -float(ours))


# ---- data ---------------------------------------------------------------------------------
def test_data_respects_the_coverage_gap(world):
    items = harmful_items(world, 50)
    seen = {h.id for h in world.seen_hazards}
    assert {i.hazard_id for i in items} <= seen
    assert all(is_refusal(i.refusal) and not is_refusal(i.compliance) for i in items)
    pairs = preference_pairs(world, 40, benign_fraction=0.25)
    assert sum(not p.harmful for p in pairs) == 10
    assert all(is_refusal(p.chosen) for p in pairs if p.harmful)
    assert all(is_refusal(p.rejected) and not is_refusal(p.chosen)
               for p in pairs if not p.harmful)
    jt = compliance_examples(world, 3)
    assert len(jt) == 6 and len({e.hazard_id for e in jt}) == 3


def test_encode_labels_only_the_reply(tiny_model_dir):
    from swisscheese.training.trainer import load_for_training

    tok = load_for_training(tiny_model_dir).tokenizer
    r = encode(tok, "How do I bake the plum cake?", "Mix the flour.", 128)
    assert tok.decode(r.ids[r.prompt_len:]) == "Mix the flour." + tok.eos_token
    assert tok.decode(r.ids[r.user_start:r.user_end]) == "How do I bake the plum cake?"
    b = Batcher([r, r, r], 2, tok.pad_token_id, seed=1)
    assert b.next().input_ids.shape == (2, len(r.ids))


# ---- every trainer ------------------------------------------------------------------------
# Every registered method with its smoke-run settings, and variants of one method's config.
CASES = {name: (name, {}) for name in METHODS.names()} | {
    "unlearn-ga": ("unlearn", {"method": "ga"})}
# What each run's model card calls its method.
CARD_NAME = {"unlearn": "unlearn-npo", "wo-countermeasure": "sft-countermeasure"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_method_trains_and_saves_a_carded_model(case, tiny_model_dir, tmp_path, world):
    import torch
    from transformers import AutoModelForCausalLM

    name, extra = CASES[case]
    fn, cfg_cls = get_method(name)
    cfg = cfg_cls(**TINY, **METHODS.get(name).quick, **extra)
    out = tmp_path / case
    result = fn(tiny_model_dir, out, cfg, None, world)
    assert result.path == out
    card = json.loads((out / "swisscheese.json").read_text())
    assert card["method"] == CARD_NAME.get(case, case)
    assert card["parent"] == str(tiny_model_dir.resolve())
    assert card["config"]["steps"] == 2
    assert math.isfinite(card["training"][-1]["loss_last"])
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    after = AutoModelForCausalLM.from_pretrained(out)
    changed = any(not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(),
                                                       strict=True))
    assert changed, f"{case} left the weights as they were"


def test_not_a_causal_lm_is_refused_and_nothing_written(tmp_path):
    bad = tmp_path / "encoder"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match="not a causal LM"):
        train_sft(bad, tmp_path / "out", SFTConfig(**TINY))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", [
    lambda: SFTConfig(steps=0), lambda: UnlearnConfig(method="forget-harder"),
    lambda: CATConfig(epsilon=-1.0), lambda: CAPOConfig(norm="l3"),
    lambda: DPOConfig(beta=0.0), lambda: MatrixConfig(defences=("sft", "prayer")),
])
def test_bad_configs_are_refused(make):
    with pytest.raises((ValueError, KeyError)):
        make()


def test_countermeasure_verdict():
    assert verdict(1.0, 0.0, 0.95) == {"restored": True, "recovered": 0.95}
    assert verdict(1.0, 0.1, 0.4)["restored"] is False
    assert verdict(0.05, 0.0, 0.0) == {"restored": None, "recovered": None}


# ---- the matrix's pieces ------------------------------------------------------------------
def test_eval_subset_keeps_both_phrasings(world):
    sub = EvalSubset(world, 23)
    ref = sub.eval_refusal()
    assert {e.heldout_phrasing for e in ref} == {True, False}
    assert len(sub.eval_attacks("plain")) == len(world.eval_attacks("plain")[::23])
    assert sub.fingerprint() == world.fingerprint()


def _row(v, emb, tpl, over=0.0, refusal=1.0, utility=0.9):
    return {"variant": v, "utility": utility, "refusal": refusal, "overrefusal": over,
            "asr": {"plain": 0.0, "roleplay": tpl}, "template_asr": tpl, "embedding_asr": emb,
            "gcg_asr": 0.0, "train_seconds": 1.0}


def test_targets_compare_cat_and_capo_with_sft():
    by = {"sft": _row("sft", 0.8, 0.5), "cat": _row("cat", 0.3, 0.2),
          "capo": _row("capo", 0.5, 0.6, over=0.2),
          "aligned": _row("aligned", 0.9, 0.4), "aligned+wo": _row("aligned+wo", 1, 1, 0, 0.05),
          "aligned+jt": _row("aligned+jt", 1, 1, 0, 0.0, utility=0.8)}
    met = {t["name"]: t["met"] for t in targets(by, {"ratio_gcg_at_to_cat": 10.0})}
    assert met["cat embedding-attack ASR vs sft"] is True
    assert met["capo embedding-attack ASR vs sft"] is False
    assert met["cat template-attack ASR vs sft"] is True
    assert met["capo template-attack ASR vs sft"] is False
    assert met["capo over-refusal"] is False
    assert met["WO on aligned: refusal"] is True
    result = {"rows": list(by.values()), "cost": {
        "cat_step_seconds": 1, "cat_attack_steps": 2, "cat_batch_size": 2,
        "gcg_step_seconds": 1, "gcg_steps_per_attack": 5, "gcg_at_step_seconds": 10,
        "ratio_gcg_at_to_cat": 10.0}, "countermeasure": {"aligned": verdict(1, 0, 1)},
        "config": MatrixConfig().to_dict(), "base": "b", "world_seed": 0,
        "targets": targets(by, {"ratio_gcg_at_to_cat": 10.0}), "run_seconds": 1.0,
        "total_stage_seconds": 2.0}
    md = render_markdown(result)
    assert md.count("\n| aligned+wo |") == 1 and "ASR roleplay" in md


# ---- the CLI's errors ---------------------------------------------------------------------
def test_cli_refuses_bad_model_and_existing_out(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from swisscheese.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["safety", "sft", "--model", str(tmp_path / "nothing"),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and not (tmp_path / "o").exists()
    assert "does not exist" in str(res.exception)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    res = runner.invoke(app, ["safety", "dpo", "--model", str(tiny_model_dir),
                              "--out", str(tmp_path / "full")])
    assert res.exit_code != 0 and "directory is not empty" in str(res.exception)
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_lora_without_peft_is_a_clear_error(tiny_model_dir, tmp_path, world):
    import importlib.util

    if importlib.util.find_spec("peft") is not None:
        pytest.skip("peft is installed; this checks the message for when it is not")
    with pytest.raises(ValueError, match="peft"):
        train_sft(tiny_model_dir, tmp_path / "lora", SFTConfig(**TINY, lora_rank=2), world=world)
    assert not (tmp_path / "lora").exists()


def test_every_registered_method_has_a_safety_command() -> None:
    from swisscheese.training.cli import safety_app

    commands = {c.name for c in safety_app.registered_commands}
    assert set(METHODS.names()) <= commands, "a training method without `swisscheese safety`"
