"""Ready-made campaigns. `organism` is the one the demo runs: the world's eight levels and
eight more hazards, every template and converter attack and best-of-N, against the
organism unguarded and behind each layer of the guard, plus look-alikes for over-refusal.
Its size keeps it to a few minutes on 2 CPU cores."""

from __future__ import annotations

from collections.abc import Callable

from swisscheese.redteam.config import BehaviourSource, CampaignConfig, PluginSpec
from swisscheese.redteam.targets import TargetSpec
from swisscheese.registry import Registry

# More than the world has (264 for seed 0): every look-alike is sent.
ALL_LOOKALIKES = 1000
ORGANISM_TARGETS = ("helpful-only", "aligned", "aligned+input", "aligned+input+output")


def organism(base: str = "runs/demo/organism",
             bundle: str | None = "runs/classifier/bundle") -> CampaignConfig:
    targets = [t for t in ORGANISM_TARGETS if bundle is not None or "+" not in t]
    return CampaignConfig(
        name="organism",
        behaviours=[BehaviourSource(world="all", limit=8)],
        attacks=[
            PluginSpec("plain"),
            PluginSpec("competing_objectives"),
            PluginSpec("mismatched_generalization"),
            PluginSpec("roleplay"),
            PluginSpec("story"),
            PluginSpec("dan"),
            PluginSpec("many_shot", {"shots": [1, 2]}),
            PluginSpec("converters"),
            # Light augmentations: a 1M-parameter model cannot read heavily scrambled text.
            PluginSpec("best_of_n", {"n": 4, "chunk": 4, "base": "roleplay", "sigma": 0.01}),
        ],
        targets=[TargetSpec(t) for t in targets],
        judge=PluginSpec("detail"),
        base=base,
        bundle=bundle,
        overrefusal=ALL_LOOKALIKES,
        batch_size=48,
        concurrency=2,
    )


# Campaign presets by name (`redteam run --preset`): functions that build a CampaignConfig.
PRESETS: Registry[Callable[..., CampaignConfig]] = Registry("campaign preset")
PRESETS.register(organism, name="organism")


def get_preset(name: str, **kwargs: str | None) -> CampaignConfig:
    """The campaign the preset `name` builds (an unknown name lists the registered ones)."""
    return PRESETS.get(name)(**{k: v for k, v in kwargs.items() if v is not None})
