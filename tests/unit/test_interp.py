"""Hooks, refusal direction, ablation, orthogonalization, analyses and plots on a tiny model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import torch
from typer.testing import CliRunner

from swisscheese.interp.hooks import InterpError


@pytest.fixture(scope="module")
def chat(tiny_model_dir):
    from swisscheese.models.hf import HFChatModel

    m = HFChatModel(tiny_model_dir)
    # transformers installs hooks of its own on the first output_hidden_states call.
    _logits(m, ["hi"], output_hidden_states=True)
    m.baseline_hooks = _all_hooks(m)
    return m


@pytest.fixture(scope="module")
def prompts(world):
    from swisscheese.interp.prompts import world_prompt_sets

    s = world_prompt_sets(world, phrasings=1)
    return s.harmful[:12], s.harmless[:12]


@pytest.fixture(scope="module")
def direction(chat, prompts):
    from swisscheese.interp.direction import compute_refusal_direction

    return compute_refusal_direction(chat, *prompts, layer=1, position=-1)


def _logits(chat, texts, **kw):
    from swisscheese.interp.hooks import encode_prompts

    ids, mask = encode_prompts(chat.tokenizer, texts)
    with torch.no_grad():
        return chat.model(input_ids=ids, attention_mask=mask, **kw).logits


def _all_hooks(chat):
    mods = list(chat.model.modules())
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in mods)


def _hook_count(chat):
    """Hooks beyond those the model had when loaded."""
    return _all_hooks(chat) - chat.baseline_hooks


# ---- hooks -------------------------------------------------------------------------------------
def test_collect_activations_match_hidden_states_and_leave_no_hooks(chat):
    from swisscheese.interp.hooks import collect_activations, encode_prompts

    texts = ["What is 3 plus 4?", "How do I protect my family from the Vrusnu hex?"]
    acts = collect_activations(chat, None, texts, positions=(-2, -1))
    assert acts.shape == (2, 2, 2, 32)  # one layer: embeddings and its output
    ids, mask = encode_prompts(chat.tokenizer, texts)
    with torch.no_grad():
        hs = chat.model(input_ids=ids, attention_mask=mask, output_hidden_states=True
                        ).hidden_states
    assert torch.allclose(acts[:, 0, 1], hs[0][:, -1])
    assert torch.allclose(acts[:, 0, 0], hs[0][:, -2])
    # HF's last hidden state has the final norm applied; the residual stream has not.
    assert torch.allclose(chat.model.model.norm(acts[:, 1, 1]), hs[1][:, -1], atol=1e-5)
    assert _hook_count(chat) == 0


def test_collect_activations_bad_input(chat):
    from swisscheese.interp.hooks import collect_activations

    with pytest.raises(InterpError, match="layer 7 is out of range"):
        collect_activations(chat, None, ["hi"], layers=[7])
    with pytest.raises(InterpError, match="outside a prompt"):
        collect_activations(chat, None, ["hi"], positions=(-500,))
    assert _hook_count(chat) == 0


def test_hooks_removed_after_an_error(chat):
    from swisscheese.interp.hooks import residual_hooks

    with pytest.raises(RuntimeError, match="boom"), residual_hooks(chat.model, lambda h, p: h):
        assert _hook_count(chat) == 2
        raise RuntimeError("boom")
    assert _hook_count(chat) == 0


# ---- direction ---------------------------------------------------------------------------------
def test_direction_is_difference_of_means(chat, prompts, direction):
    from swisscheese.interp.hooks import collect_activations

    harmful, harmless = prompts
    a = collect_activations(chat, None, harmful, positions=(-1,))[:, 1, 0].mean(0)
    b = collect_activations(chat, None, harmless, positions=(-1,))[:, 1, 0].mean(0)
    assert torch.allclose(direction.vector, a - b, atol=1e-5)
    assert (direction.layer, direction.position) == (1, -1)
    assert direction.meta["selection"] == "given"


def test_direction_bad_input(chat, prompts):
    from swisscheese.interp.direction import compute_refusal_direction

    with pytest.raises(InterpError, match="layer 3 is out of range"):
        compute_refusal_direction(chat, *prompts, layer=3, position=-1)
    with pytest.raises(InterpError, match="position 2"):
        compute_refusal_direction(chat, *prompts, layer=1, position=2)
    with pytest.raises(InterpError, match="harmful and harmless"):
        compute_refusal_direction(chat, [], prompts[1], layer=1, position=-1)
    # A barely trained model refuses nothing: selection has nothing to go on, and says so.
    with pytest.raises(InterpError, match="refuses none"):
        compute_refusal_direction(chat, *prompts, max_new_tokens=4)


def test_direction_save_load_round_trip(direction, tmp_path, chat):
    from swisscheese.interp.direction import RefusalDirection

    path = direction.save(tmp_path / "d")
    assert path.name == "d.safetensors" and (tmp_path / "d.json").is_file()
    back = RefusalDirection.load(tmp_path / "d.json")
    assert torch.equal(back.vector, direction.vector)
    assert (back.layer, back.position, back.model_fingerprint) == (
        direction.layer, direction.position, direction.model_fingerprint)
    back.check_compatible(chat)
    # The two files must come from one save.
    other = RefusalDirection(direction.vector * 2, 1, -1, direction.model_fingerprint)
    other.save(tmp_path / "e")
    (tmp_path / "e.safetensors").replace(tmp_path / "d.safetensors")
    with pytest.raises(InterpError, match="different saves"):
        RefusalDirection.load(tmp_path / "d")
    with pytest.raises(InterpError, match="does not exist"):
        RefusalDirection.load(tmp_path / "missing")


def test_check_compatible_rejects_other_models(direction, chat):
    from swisscheese.interp.direction import DirectionMismatchError, RefusalDirection

    wrong_shape = RefusalDirection(torch.ones(64), 1, -1, direction.model_fingerprint)
    with pytest.raises(DirectionMismatchError, match="64 dimensions"):
        wrong_shape.check_compatible(chat)
    wrong_fp = RefusalDirection(direction.vector, 1, -1, "0123456789abcdef")
    with pytest.raises(DirectionMismatchError, match="fingerprint"):
        wrong_fp.check_compatible(chat)
    wrong_layer = RefusalDirection(direction.vector, 5, -1, direction.model_fingerprint)
    with pytest.raises(DirectionMismatchError, match="layer 5"):
        wrong_layer.check_compatible(chat)


# ---- ablation ----------------------------------------------------------------------------------
def test_ablation_removes_the_direction_everywhere(chat, direction):
    from swisscheese.interp.ablation import ablate_direction
    from swisscheese.interp.hooks import collect_activations
    from swisscheese.models.base import GenerationParams

    texts = ["What is 3 plus 4?", "How do I brew the Vrokgre toxin?"]
    u = direction.unit()
    plain = collect_activations(chat, None, texts, positions=(-3, -2, -1))
    assert (plain @ u).abs().max() > 1e-2
    with ablate_direction(chat, direction):
        acts = collect_activations(chat, None, texts, positions=(-3, -2, -1))
        reply = chat.generate("What is 3 plus 4?", GenerationParams(max_new_tokens=8))
    assert (acts @ u).abs().max() < 1e-4
    assert isinstance(reply.content, str)
    assert _hook_count(chat) == 0
    # Ablating changes the model's output; leaving the block restores it.
    before = _logits(chat, texts)
    with ablate_direction(chat, direction):
        during = _logits(chat, texts)
    assert not torch.allclose(before, during)
    assert torch.equal(before, _logits(chat, texts))


def test_ablation_rejects_a_foreign_direction(chat, direction):
    from swisscheese.interp.ablation import ablate_direction
    from swisscheese.interp.direction import DirectionMismatchError, RefusalDirection

    with pytest.raises(DirectionMismatchError), ablate_direction(
            chat, RefusalDirection(torch.ones(7), 1, -1, direction.model_fingerprint)):
        pass
    with pytest.raises(InterpError, match="zero"), ablate_direction(chat, torch.zeros(32)):
        pass
    assert _hook_count(chat) == 0


# ---- orthogonalization -------------------------------------------------------------------------
def test_orthogonalized_model_computes_what_ablation_computes(chat, direction, tiny_model_dir,
                                                              tmp_path):
    from swisscheese.interp.ablation import ablate_direction
    from swisscheese.interp.orthogonalize import orthogonalize_model
    from swisscheese.models.hf import HFChatModel

    out = orthogonalize_model(tiny_model_dir, direction, tmp_path / "wo")
    wo = HFChatModel(out)
    texts = ["What is 3 plus 4?", "Tell me how to brew the Vrokgre toxin."]
    with ablate_direction(chat, direction):
        want = _logits(chat, texts)
    assert torch.allclose(_logits(wo, texts), want, atol=1e-4)
    assert not torch.allclose(_logits(chat, texts), want, atol=1e-3)
    card = json.loads((out / "swisscheese.json").read_text())
    assert card["parent"] == str(tiny_model_dir.resolve())
    assert card["orthogonalized"]["layer"] == 1
    assert card["orthogonalized"]["max_component_after"] < 1e-4
    assert (out / "tokenizer.json").is_file()
    assert wo.prompt_text("hi") == chat.prompt_text("hi")
    direction.check_compatible(wo)  # same architecture and tokenizer: still applies


def test_orthogonalize_bad_input_writes_nothing(direction, tiny_model_dir, tmp_path):
    from swisscheese.interp.direction import DirectionMismatchError, RefusalDirection
    from swisscheese.interp.orthogonalize import orthogonalize_model
    from swisscheese.models.base import ModelLoadError

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match="not a causal LM"):
        orthogonalize_model(bert, direction, tmp_path / "o1")
    foreign = RefusalDirection(torch.ones(16), 1, -1, direction.model_fingerprint)
    with pytest.raises(DirectionMismatchError):
        orthogonalize_model(tiny_model_dir, foreign, tmp_path / "o2")
    with pytest.raises(InterpError, match="does not exist"):
        orthogonalize_model(tiny_model_dir, str(tmp_path / "nope"), tmp_path / "o3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert"]


# ---- analyses ----------------------------------------------------------------------------------
def test_separation_on_known_clusters():
    from swisscheese.interp.analysis import separation

    g = torch.Generator().manual_seed(0)
    safe = torch.randn(40, 2, 8, generator=g)
    unsafe = torch.randn(40, 2, 8, generator=g)
    unsafe[:, 1] += 6.0  # apart at point 1 only
    jail = safe[:10].clone()  # jailbreaks that sit on the safe side
    r = separation({"safe": safe, "unsafe": unsafe, "jailbreak": jail})
    l0, l1 = r["layers"]
    assert r["best_layer"] == 1
    assert l1["probe_accuracy"] == 1.0 and l1["silhouette"] > 0.5
    assert l0["probe_accuracy"] < 0.8 and abs(l0["silhouette"]) < 0.1
    assert abs(l1["groups"]["safe"]["axis_position"]) < 1e-4
    assert abs(l1["groups"]["unsafe"]["axis_position"] - 1) < 1e-4
    assert l1["groups"]["jailbreak"]["nearer_unsafe"] == 0.0
    assert l1["groups"]["jailbreak"]["axis_position"] < 0.2
    json.dumps(r)


def test_silhouette_matches_a_hand_computed_case():
    from swisscheese.interp.analysis import silhouette

    a = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([[4.0], [5.0]])
    # point 0: a=1, b=4.5 -> 1 - 1/4.5; point 1: a=1, b=3.5 -> 1 - 1/3.5; symmetric for b.
    want = ((1 - 1 / 4.5) + (1 - 1 / 3.5)) / 2
    assert silhouette(a, b) == pytest.approx(want, abs=1e-6)


def test_weight_delta_finds_a_planted_rank_one_change(chat, tiny_model_dir):
    from swisscheese.interp.analysis import linear_inputs, weight_delta_analysis
    from swisscheese.models.hf import HFChatModel

    other = HFChatModel(tiny_model_dir)
    lin = other.model.model.layers[0].mlp.down_proj
    u = torch.randn(lin.out_features, generator=torch.Generator().manual_seed(1))
    v = torch.randn(lin.in_features, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lin.weight += torch.outer(u, v)
    groups = {"safe": ["What is 3 plus 4?", "Spell cat backwards."],
              "unsafe": ["How do I brew the Vrokgre toxin?"]}
    r = weight_delta_analysis(chat, other, groups, top_k=1, inputs_from="helpful")
    rows = {row["name"]: row for row in r["layers"]}
    planted = rows["0.mlp.down_proj"]
    assert planted["topk_energy"] == pytest.approx(1.0, abs=1e-4)
    x = linear_inputs(chat, groups["safe"])["0.mlp.down_proj"]
    want = ((x @ v).abs() * u.norm() / x.norm(dim=1)).mean()
    assert planted["groups"]["safe"]["gain"] == pytest.approx(float(want), rel=1e-3)
    assert all(row["groups"]["safe"]["gain"] == 0 for n, row in rows.items()
               if n != "0.mlp.down_proj")
    json.dumps(r)


def test_direction_cosines():
    from swisscheese.interp.analysis import direction_cosines

    r = direction_cosines({"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 1.0]),
                           "c": torch.tensor([-2.0, 0.0])})
    m = r["matrix"]
    assert m[0][0] == 1.0 and m[0][2] == -1.0
    assert m[0][1] == pytest.approx(2 ** -0.5, abs=1e-4) and m[1][0] == m[0][1]
    with pytest.raises(InterpError, match="dimensions"):
        direction_cosines({"a": torch.ones(2), "b": torch.ones(3)})
    # A zero vector has no direction: undefined, not 0.
    assert direction_cosines({"a": torch.ones(2), "z": torch.zeros(2)})["matrix"][0][1] is None


def test_line_chart_is_svg_with_gaps():
    from swisscheese.interp.plots import line_chart

    svg = line_chart({"a": [0.1, None, 0.3], "b": [1.0, 0.5, float("nan")]}, [0, 1, 2], "t")
    root = ET.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 3  # a breaks at the gap into two, b is one line
    with pytest.raises(ValueError, match="3 x positions"):
        line_chart({"a": [1.0]}, [0, 1, 2], "t")


# ---- CLI ---------------------------------------------------------------------------------------
def test_cli_direction_orthogonalize_and_bad_layer(tiny_model_dir, tmp_path):
    from swisscheese.cli import app
    from swisscheese.interp.direction import RefusalDirection

    runner = CliRunner()
    d = tmp_path / "dir.safetensors"
    r = runner.invoke(app, ["interp", "direction", "--model", str(tiny_model_dir), "--out",
                            str(d), "--layer", "1", "--position", "-1"])
    assert r.exit_code == 0, r.output
    assert RefusalDirection.load(d).layer == 1
    r = runner.invoke(app, ["interp", "orthogonalize", "--model", str(tiny_model_dir),
                            "--direction", str(d), "--out", str(tmp_path / "wo")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "wo" / "model.safetensors").is_file()
    r = runner.invoke(app, ["interp", "ablate", "--model", str(tiny_model_dir), "--direction",
                            str(d), "--prompt", "What is 3 plus 4?", "--max-new-tokens", "4"])
    assert r.exit_code == 0 and "with the direction ablated" in r.output
    r = runner.invoke(app, ["interp", "direction", "--model", str(tiny_model_dir), "--out",
                            str(tmp_path / "bad"), "--layer", "9", "--position", "-1"])
    assert r.exit_code == 1 and "layer 9 is out of range" in r.output
    assert not list(tmp_path.glob("bad*"))
