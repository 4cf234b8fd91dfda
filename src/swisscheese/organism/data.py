"""Turning world examples into token batches with loss on the assistant's reply only."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from swisscheese.world.core import Example

IGNORE = -100


def encode_examples(tokenizer, examples: Sequence[Example],
                    max_len: int) -> list[tuple[list[int], int]]:
    """(ids, prompt_length) per example; ids end with the end-of-turn token.

    Long examples are cut on the right so the prompt, which decides the reply, survives.
    """
    prompts = [tokenizer.apply_chat_template(e.conversation(), tokenize=False,
                                             add_generation_prompt=True) for e in examples]
    fulls = [p + e.reply + tokenizer.eos_token for p, e in zip(prompts, examples, strict=True)]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    out = []
    for p, f in zip(p_ids, f_ids, strict=True):
        out.append((f[:max_len], min(len(p), max_len)))
    return out


def batches(encoded: list[tuple[list[int], int]], batch_size: int, pad_id: int,
            rng: random.Random) -> Iterator[tuple[list[list[int]], ...]]:
    """Length-grouped batches: shuffle, sort within windows, pad on the right."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = batch_size * 32
    groups: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: len(encoded[i][0]))
        groups.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(groups)
    for g in groups:
        width = max(len(encoded[i][0]) for i in g)
        ids, mask, labels = [], [], []
        for i in g:
            seq, plen = encoded[i]
            pad = width - len(seq)
            ids.append(seq + [pad_id] * pad)
            mask.append([1] * len(seq) + [0] * pad)
            labels.append([IGNORE] * plen + seq[plen:] + [IGNORE] * pad)
        yield ids, mask, labels
