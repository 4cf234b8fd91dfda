"""Batches of preference pairs: chosen and rejected rows padded alike, one forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swisscheese.training.data import Batch, Batcher, Encoded, PreferencePair, collate, encode


@dataclass
class PairBatch:
    """Chosen rows first, then rejected rows, in one right-padded batch of 2B rows."""

    batch: Batch
    harmful: list[bool]

    @property
    def size(self) -> int:
        return len(self.harmful)


class PairBatcher:
    def __init__(self, tokenizer, pairs: Sequence[PreferencePair], batch_size: int,
                 max_len: int, seed: int = 0) -> None:
        self.chosen = [encode(tokenizer, p.prompt, p.chosen, max_len) for p in pairs]
        self.rejected = [encode(tokenizer, p.prompt, p.rejected, max_len) for p in pairs]
        self.harmful = [p.harmful for p in pairs]
        self.order = Batcher(self.chosen, batch_size, tokenizer.pad_token_id, seed)

    def next(self) -> PairBatch:
        idx = self.order.indices()
        rows: list[Encoded] = [self.chosen[i] for i in idx] + [self.rejected[i] for i in idx]
        return PairBatch(collate(rows, self.order.pad_id), [self.harmful[i] for i in idx])
