"""Ready-made campaigns. `organism` is the one the demo runs: the world's eight levels and
eight more hazards, every template and converter attack, best-of-N, the template-file
attack and Crescendo, against the organism unguarded and behind each layer of the guard
(input alone, output alone, both), plus look-alikes for over-refusal. With
`exchange_bundle` or `reply_bundle` a second bundle (one whose output classifier reads
the exchange, or the reply alone) guards one more target with both layers, beside the
campaign bundle's: the campaign then compares the two kinds of output layer. Its size
keeps it to a few minutes on 2 CPU cores."""

from __future__ import annotations

from collections.abc import Callable

from swisscheese.redteam.config import BehaviourSource, CampaignConfig, PluginSpec
from swisscheese.redteam.targets import TargetSpec
from swisscheese.registry import Registry
from swisscheese.world.families import NEW_ATTACK_FAMILIES

# More than the world has (264 for seed 0): every look-alike is sent.
ALL_LOOKALIKES = 1000
ORGANISM_TARGETS = ("helpful-only", "aligned", "aligned+input", "aligned+output",
                    "aligned+input+output")
EXCHANGE_TARGET = "aligned+input+exchange"
REPLY_TARGET = "aligned+input+reply"
# Context families the organism recipe holds out of the input classifier's training by
# default: the campaign marks their attempts as attacks the guard has not seen.
HELDOUT_CONTEXT_FAMILIES = NEW_ATTACK_FAMILIES


def organism(base: str = "runs/demo/organism",
             bundle: str | None = "runs/classifier/bundle",
             exchange_bundle: str | None = None,
             reply_bundle: str | None = None) -> CampaignConfig:
    targets = [TargetSpec(t) for t in ORGANISM_TARGETS if bundle is not None or "+" not in t]
    for name, extra in ((REPLY_TARGET, reply_bundle), (EXCHANGE_TARGET, exchange_bundle)):
        if extra is not None:
            targets.append(TargetSpec(name, model="aligned", guard="input+output",
                                      bundle=extra))
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
            # Intent carried by the conversation (aliases, split turns, code-word answers,
            # indirect reference, buried requests): the holes of separate input and
            # output classifiers, which an exchange classifier closes.
            PluginSpec("context", {"heldout": list(HELDOUT_CONTEXT_FAMILIES)}),
            # Light augmentations: a 1M-parameter model cannot read heavily scrambled text.
            PluginSpec("best_of_n", {"n": 4, "chunk": 4, "base": "roleplay", "sigma": 0.01}),
            PluginSpec("template_file"),
            PluginSpec("crescendo", {"max_turns": 4, "max_backtracks": 3, "openers": 1}),
        ],
        targets=targets,
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
