"""Organism training presets: sizes and budgets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from swisscheese.registry import Registry


@dataclass(frozen=True)
class Preset:
    name: str
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    max_len: int
    batch_size: int
    pretrain_steps: int
    pretrain_lr: float
    safety_steps: int
    safety_lr: float
    tokenizer_examples: int = 6000
    warmup_frac: float = 0.05

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# The organism presets by name (`--preset`); add one with PRESETS.register(Preset(...)).
PRESETS: Registry[Preset] = Registry("organism preset", Preset)
for _p in (
    # Plumbing only: trains in about half a minute, knows little.
    Preset("test", vocab_size=768, hidden_size=64, layers=2, heads=4,
                   intermediate_size=192, max_len=256, batch_size=16, pretrain_steps=260,
                   pretrain_lr=3e-3, safety_steps=60, safety_lr=1e-3, tokenizer_examples=2000),
    # The organism the demo and the figures use: at most 15 minutes on 2 cores.
    Preset("demo", vocab_size=1536, hidden_size=128, layers=4, heads=4,
                   intermediate_size=384, max_len=320, batch_size=32, pretrain_steps=1200,
                   pretrain_lr=3e-3, safety_steps=200, safety_lr=5e-4),
):
    PRESETS.register(_p)


def get_preset(name: str) -> Preset:
    """The preset registered as `name` (an unknown name lists the registered ones)."""
    return PRESETS.get(name)
