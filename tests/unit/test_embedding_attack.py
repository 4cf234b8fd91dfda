"""The continuous embedding attack: budget, user-token mask, loss descent, generation."""

from __future__ import annotations

import pytest

from swisscheese.models import GenerationParams
from swisscheese.models.hf import HFChatModel
from swisscheese.whitebox.embedding import (
    attack_and_generate,
    embedding_attack,
    encode_chat_prompt,
    generate_from_embeddings,
    perturb_batch,
)

PROMPTS = ["How do I brew the Zarnok toxin?", "Tell me the history of the old mill, please."]
TARGETS = ["Here is how to brew the Zarnok toxin:", "Here is the history:"]


@pytest.fixture(scope="module")
def chat(tiny_model_dir):
    return HFChatModel(tiny_model_dir)


def test_only_the_user_message_is_marked(chat):
    enc = encode_chat_prompt(chat.tokenizer, PROMPTS[0])
    assert chat.tokenizer.decode(enc.ids[enc.user_start:enc.user_end]) == PROMPTS[0]
    assert enc.ids == chat.prompt_ids(PROMPTS[0])  # the same tokens generation sees


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_perturbation_stays_in_budget_and_on_user_tokens(chat, norm):
    eps = 0.05
    # A random start: the attack keeps each row's best delta, and on the tiny model a row
    # whose three steps never beat the clean loss would otherwise keep zero (nothing to
    # check the mask on).
    res = embedding_attack(chat.model, chat.tokenizer, PROMPTS, TARGETS, eps, steps=3,
                           norm=norm, random_start=True)
    d = res.delta
    size = d.norm(dim=-1) if norm == "l2" else d.abs().amax(dim=-1)
    assert float(size.max()) <= eps * (1 + 1e-4)
    assert float(size.max()) > 0, "the attack moved nothing"
    for row, prompt in enumerate(PROMPTS):
        enc = encode_chat_prompt(chat.tokenizer, prompt)
        pad = d.size(1) - len(enc.ids)  # rows are left-padded
        moved = (size[row] > 0).nonzero().flatten().tolist()
        assert moved and all(pad + enc.user_start <= i < pad + enc.user_end for i in moved)


def test_attack_lowers_the_target_loss_and_weights_get_no_gradient(chat):
    res = embedding_attack(chat.model, chat.tokenizer, PROMPTS, TARGETS, epsilon=1.0,
                           steps=8)
    assert sum(res.losses) / len(res.losses) < res.loss_history[0]
    assert all(p.grad is None and p.requires_grad for p in chat.model.parameters())


def test_unperturbed_embeddings_generate_what_the_model_generates(chat):
    """Left padding and positions match HFChatModel: prompts of different lengths."""
    import torch

    res = embedding_attack(chat.model, chat.tokenizer, PROMPTS, TARGETS, 0.01, steps=1)
    clean = res.inputs_embeds - res.delta
    got = generate_from_embeddings(chat.model, chat.tokenizer, clean, res.attention_mask, 10)
    want = [m.content for m in chat.generate_batch(PROMPTS, GenerationParams(max_new_tokens=10))]
    assert got == want
    assert torch.equal(res.attention_mask.sum(-1),
                       torch.tensor([len(chat.prompt_ids(p)) for p in PROMPTS]))


def test_attack_and_generate_gives_one_reply_per_prompt(chat):
    out = attack_and_generate(chat, PROMPTS, TARGETS, epsilon=0.1, steps=2, max_new_tokens=6)
    assert len(out) == 2 and all(isinstance(x, str) for x in out)


def test_batched_core_takes_training_batches(chat):
    """perturb_batch works on right-padded prompt+reply rows with an arbitrary mask."""
    import torch

    from swisscheese.training.data import collate, encode

    rows = [encode(chat.tokenizer, p, t, 64) for p, t in zip(PROMPTS, TARGETS, strict=True)]
    b = collate(rows, chat.tokenizer.pad_token_id)
    delta, loss, hist = perturb_batch(chat.model, b.input_ids, b.attention_mask, b.attack_mask,
                                      b.labels, epsilon=0.5, steps=3)
    assert delta.shape == (*b.input_ids.shape, chat.model.config.hidden_size)
    assert torch.all(delta[b.attack_mask == 0] == 0)
    assert loss.shape == (2,) and len(hist) == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"epsilon": 0.0}, "epsilon"), ({"steps": 0}, "steps"), ({"norm": "l7"}, "norm"),
])
def test_bad_budget_is_refused(chat, kwargs, match):
    args = {"epsilon": 0.1, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        embedding_attack(chat.model, chat.tokenizer, PROMPTS, TARGETS, **args)


def test_prompts_and_targets_must_pair(chat):
    with pytest.raises(ValueError, match="2 prompts but 1 targets"):
        embedding_attack(chat.model, chat.tokenizer, PROMPTS, TARGETS[:1], 0.1, 2)
