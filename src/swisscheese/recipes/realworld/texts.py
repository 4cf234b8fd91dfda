"""The texts the realworld recipe's classifiers learn from: requests, templates and
injections against instructions and e-mails, with converter-disguised copies of both."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swisscheese.classifiers.base import render_conversation
from swisscheese.recipes.realworld.data import RealWorldData

# Disguises held out of training by default: one per converter family, as for the organism.
DEFAULT_HELDOUT = ("morse", "homoglyphs", "codeword")
# Converters that change the conversation (multiturn) or need a model (translation) are
# left out: the first renders as role-prefixed turns, the second would be the world's Velsh.
_SKIP_CONVERTERS = frozenset({"translation"})
SLOT = "[INSERT PROMPT HERE]"
CLEAN_EMAIL_WEIGHT = 4


@dataclass(frozen=True)
class RealWorldConfig:
    """Settings of the realworld recipe (recorded in the bundle's training record)."""

    augment: int = field(default=8, metadata={
        "help": "converter-disguised copies of each training request (0: none)"})
    backend: str = field(default="ngram", metadata={
        "help": "registered input classifier backend; the output uses its streaming twin"})
    limit: int | None = field(default=None, metadata={
        "help": "at most this many rows per source (quick runs); None reads everything"})
    input_params: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "constructor kwargs of the input classifier"})
    output_params: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "constructor kwargs of the output classifier"})

    def __post_init__(self) -> None:
        if self.augment < 0:
            raise ValueError(f"augment must be >= 0, got {self.augment}")
        if self.limit is not None and (isinstance(self.limit, bool)
                                       or not isinstance(self.limit, int)):
            raise ValueError(f"limit must be null or an integer, got {self.limit!r}")


def augment_converters(heldout: Sequence[str]) -> tuple[list[str], list[str]]:
    """(converters used in training, held-out converters), all from the registry."""
    from swisscheese.data.converters import list_converters

    names = [n for n in list_converters() if n not in _SKIP_CONVERTERS]
    unknown = [h for h in heldout if h not in names]
    if unknown:
        raise KeyError(f"unknown held-out converter(s) {', '.join(unknown)}; registered: "
                       f"{', '.join(names)}")
    return [n for n in names if n not in heldout], list(heldout)


def disguise(texts: Sequence[str], names: Sequence[str], copies: int, seed: int
             ) -> list[str]:
    """`copies` disguised versions of each text, converters picked per text by `seed`."""
    from swisscheese.data.converters import get_converter

    if copies <= 0 or not names:
        return []
    convs = {n: get_converter(n, seed=seed) for n in names}
    rng = random.Random(f"swisscheese-realworld-augment-{seed}")
    out = []
    for t in texts:
        for n in rng.sample(list(names), min(copies, len(names))):
            out.append(render_conversation([m.to_dict() for m in convs[n].to_messages(t)]))
    return out


def fill_templates(templates: Sequence[str], requests: Sequence[str], seed: int) -> list[str]:
    """Templates with a request slot, filled with requests (one each, picked by seed)."""
    rng = random.Random(f"swisscheese-realworld-fill-{seed}")
    return [t.replace(SLOT, rng.choice(requests)) for t in templates
            if SLOT in t and requests]


def input_training_texts(data: RealWorldData, augment: int, heldout: Sequence[str],
                         seed: int) -> tuple[list[str], list[int]]:
    """The input classifier's training texts and labels."""
    names, _ = augment_converters(heldout)
    harm = (data.train_harmful + data.train_templates + data.train_injections
            + fill_templates(data.train_templates, data.train_harmful, seed))
    harm += disguise(data.train_harmful, names, augment, seed)
    # As many disguised harmless texts as harmful ones, so a disguise is not harm in itself.
    benign_src = data.train_benign[:max(len(data.train_harmful), 1)]
    benign = data.train_benign + disguise(benign_src, names, augment, seed + 1)
    # Each clean e-mail also appears injected, so its own words carry no signal; repeating
    # it (a weight, for a fit without sample weights) makes "an e-mail" lean harmless
    # unless an injected instruction says otherwise. Without it most unseen clean e-mails
    # scored above a threshold calibrated on short instructions.
    benign += data.train_clean_emails * CLEAN_EMAIL_WEIGHT
    return harm + benign, [1] * len(harm) + [0] * len(benign)
