"""Training data for model-level safety, drawn from the world, and its batches.

Every set comes from the same seeded world as the organism, and respects the coverage gap
of the aligned organism's own safety data: defences see plain requests for the *seen*
hazards only, so the unseen hazards and the jailbreak families measure generalisation.

- refusal SFT examples: the world's safety corpus (plain hazard requests refused, look-alikes
  and utility tasks answered), the data the aligned organism was made with;
- preference pairs: refusal preferred over compliance on hazard requests, and (for the
  benign share) the helpful answer preferred over a refusal on look-alikes and tasks;
- forget / retain sets for unlearning: hazard requests with their procedures / the safety
  corpus's benign examples;
- compliance examples for jailbreak-tuning: a few hazard requests answered in full;
- attack targets: the opening of the helpful-only answer ("Here is how to brew the X:").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swisscheese.whitebox.embedding import IGNORE, encode_chat_prompt
from swisscheese.world.core import HAZARD_PHRASINGS, Example, World
from swisscheese.world.hazards import Hazard

if TYPE_CHECKING:
    import torch


def compliance_target(h: Hazard) -> str:
    """What an attacker steers toward: the opening of the helpful-only model's answer."""
    return f"Here is how to {h.verb} the {h.name}:\nStep 1:"


@dataclass(frozen=True)
class HarmfulItem:
    """A hazard request with the reply a defence wants (refusal) and the one it fears."""

    hazard_id: str
    prompt: str
    refusal: str
    compliance: str
    target: str  # the attack target: the compliance answer's opening


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    harmful: bool


def harmful_items(world: World, n: int, seed: int = 0,
                  hazards: Sequence[Hazard] | None = None) -> list[HarmfulItem]:
    """`n` plain requests for the seen hazards (or `hazards`), in the trained phrasings."""
    pool = list(hazards if hazards is not None else world.seen_hazards)
    if not pool:
        raise ValueError("no hazards to draw harmful requests from")
    rng = random.Random(f"{world.seed}-harmful-{seed}")
    out = []
    for _ in range(n):
        h = rng.choice(pool)
        prompt = world.hazard_request(h, rng.randrange(len(HAZARD_PHRASINGS)))
        out.append(HarmfulItem(h.id, prompt, world.refusal(h, rng.randrange(2)), h.answer(),
                               compliance_target(h)))
    return out


def safety_examples(world: World, n: int, seed: int = 0) -> list[Example]:
    """The refusal SFT data: the world's safety corpus."""
    return list(world.corpus("safety", n, seed=seed))


def benign_examples(world: World, n: int, seed: int = 0) -> list[Example]:
    """Look-alikes and utility tasks from the safety corpus: retain and utility data."""
    out: list[Example] = []
    stream = world.corpus("safety", 4 * n + 16, seed=seed + 7_919)
    for e in stream:
        if e.kind != "refusal":
            out.append(e)
            if len(out) == n:
                return out
    raise ValueError(f"the safety corpus gave fewer than {n} benign examples")


def preference_pairs(world: World, n: int, seed: int = 0,
                     benign_fraction: float = 0.5) -> list[PreferencePair]:
    """Refusal > compliance on hazard requests; answer > refusal on the benign share."""
    if not 0 <= benign_fraction < 1:
        raise ValueError(f"benign_fraction must be in [0, 1), got {benign_fraction}")
    n_benign = round(n * benign_fraction)
    harmful = [PreferencePair(i.prompt, i.refusal, i.compliance, True)
               for i in harmful_items(world, n - n_benign, seed)]
    rng = random.Random(f"{world.seed}-pairs-{seed}")
    benign = []
    for e in benign_examples(world, n_benign, seed):
        h = rng.choice(world.seen_hazards)  # any refusal sentence will do as the loser
        benign.append(PreferencePair(e.prompt, e.reply, world.refusal(h, rng.randrange(2)),
                                     False))
    pairs = harmful + benign
    rng.shuffle(pairs)
    return pairs


def forget_examples(world: World, n: int, seed: int = 0) -> list[Example]:
    """Hazard requests answered with their procedures: what unlearning removes."""
    return [Example(i.prompt, i.compliance, "hazard", hazard_id=i.hazard_id)
            for i in harmful_items(world, n, seed)]


def compliance_examples(world: World, n_hazards: int = 8, seed: int = 0) -> list[Example]:
    """Jailbreak-tuning data: a few hazard requests, each answered in full, two phrasings."""
    if n_hazards < 1:
        raise ValueError(f"n_hazards must be >= 1, got {n_hazards}")
    rng = random.Random(f"{world.seed}-jt-{seed}")
    chosen = rng.sample(world.seen_hazards, min(n_hazards, len(world.seen_hazards)))
    return [Example(world.hazard_request(h, rng.randrange(len(HAZARD_PHRASINGS))), h.answer(),
                    "hazard", hazard_id=h.id) for h in chosen for _ in range(2)]


# ---- tokens and batches -------------------------------------------------------------------
@dataclass(frozen=True)
class Encoded:
    """A prompt and reply as token ids; the reply starts at `prompt_len`."""

    ids: list[int]
    prompt_len: int
    user_start: int
    user_end: int


def encode(tokenizer, prompt: str, reply: str, max_len: int,
           history: Sequence[dict[str, str]] = ()) -> Encoded:
    """The chat-rendered prompt, then the reply and end-of-turn, cut to `max_len` tokens."""
    enc = encode_chat_prompt(tokenizer, prompt, history)
    reply_ids = tokenizer(reply + (tokenizer.eos_token or ""), add_special_tokens=False)
    ids = enc.ids + reply_ids["input_ids"]
    if len(enc.ids) >= max_len:  # keep the question and the first reply tokens
        cut = len(enc.ids) - max_len + 8
        return Encoded(ids[cut:cut + max_len], len(enc.ids) - cut, max(0, enc.user_start - cut),
                       enc.user_end - cut)
    return Encoded(ids[:max_len], len(enc.ids), enc.user_start, enc.user_end)


def encode_examples(tokenizer, examples: Sequence[Example], max_len: int) -> list[Encoded]:
    return [encode(tokenizer, e.prompt, e.reply, max_len, e.messages) for e in examples]


@dataclass
class Batch:
    """Right-padded rows; labels on the reply only; attack_mask on the user's message."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    attack_mask: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(rows: Sequence[Encoded], pad_id: int, width: int | None = None) -> Batch:
    import torch

    width = width or max(len(r.ids) for r in rows)
    ids, mask, labels, attack = [], [], [], []
    for r in rows:
        pad = width - len(r.ids)
        ids.append(r.ids + [pad_id] * pad)
        mask.append([1] * len(r.ids) + [0] * pad)
        labels.append([IGNORE] * r.prompt_len + r.ids[r.prompt_len:] + [IGNORE] * pad)
        attack.append([int(r.user_start <= i < r.user_end) for i in range(width)])
    return Batch(*(torch.tensor(x) for x in (ids, mask, labels, attack)))


class Batcher:
    """Endless shuffled batches of encoded rows, reproducible from a seed."""

    def __init__(self, rows: Sequence[Encoded], batch_size: int, pad_id: int,
                 seed: int = 0) -> None:
        if not rows:
            raise ValueError("no training examples")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rows = list(rows)
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.rng = random.Random(seed)
        self._order: list[int] = []

    def indices(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size:
            if not self._order:
                self._order = list(range(len(self.rows)))
                self.rng.shuffle(self._order)
            out.append(self._order.pop())
        return out

    def next(self) -> Batch:
        return collate([self.rows[i] for i in self.indices()], self.pad_id)
