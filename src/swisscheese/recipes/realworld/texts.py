"""The texts the realworld recipe's classifiers learn from: requests, templates and
injections against instructions and e-mails, with converter-disguised copies of both."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swisscheese.classifiers.base import render_conversation
from swisscheese.recipes.realworld.categories import HARMFUL_IDS, REQUEST_IDS
from swisscheese.recipes.realworld.data import RealWorldData

# Disguises held out of training by default: one per converter family, as for the organism.
DEFAULT_HELDOUT = ("morse", "homoglyphs", "codeword")
# Converters that change the conversation (multiturn) or need a model (translation) are
# left out: the first renders as role-prefixed turns, the second would be the world's Velsh.
_SKIP_CONVERTERS = frozenset({"translation"})
SLOT = "[INSERT PROMPT HERE]"
CLEAN_EMAIL_WEIGHT = 4
# The harmless look-alikes (XSTest safe, JailbreakBench benign) are few beside thousands of
# Alpaca instructions; repeated, they weigh enough to teach that harm's words are not harm.
LOOKALIKE_WEIGHT = 4
# The encoder input classifier reads three of MiniLM's six layers side by side (2, 4 and the
# last), not the last alone: on the held-out splits the middle layers lifted every harmful
# source (benchmarks/realworld_classifier.py: JailbreakBench 0.61 -> 0.76, XSTest unsafe
# 0.57 -> 0.74, in-the-wild templates 0.87 -> 0.95; the README's stop 24 table). Chosen for
# MiniLM, so applied to it only: another encoder (`--model-dir`) reads its last layer unless
# `layers` is given.
MINILM_INPUT_DEFAULTS: Mapping[str, Any] = {"layers": (-5, -3, -1)}


@dataclass(frozen=True)
class RealWorldConfig:
    """Settings of the realworld recipe (recorded in the bundle's training record)."""

    augment: int = field(default=4, metadata={
        "help": "converter-disguised copies of each training request (0: none)"})
    backend: str = field(default="encoder", metadata={
        "help": "registered input classifier backend ('encoder': the pinned MiniLM; "
                "'ngram': the fast hashed n-gram); the output uses its streaming twin"})
    limit: int | None = field(default=None, metadata={
        "help": "at most this many rows per source (quick runs); None reads everything"})
    input_params: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "constructor kwargs of the input classifier"})
    output_params: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "constructor kwargs of the output classifier"})

    def input_kwargs(self, seed: int) -> dict[str, Any]:
        """The input classifier's constructor kwargs: the seed, the packaged MiniLM's
        defaults when it is the encoder, then `input_params` (which wins)."""
        minilm = self.backend.startswith("encoder") and not self.input_params.get("model_dir")
        return {"seed": seed, **(MINILM_INPUT_DEFAULTS if minilm else {}), **self.input_params}

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


def fill_templates(templates: Sequence[str], requests: Sequence[str], seed: int
                   ) -> list[tuple[str, int]]:
    """Templates with a request slot, filled with requests (one each, picked by seed):
    (filled text, index of the request)."""
    rng = random.Random(f"swisscheese-realworld-fill-{seed}")
    out = []
    for t in templates:
        if SLOT in t and requests:
            i = rng.randrange(len(requests))
            out.append((t.replace(SLOT, requests[i]), i))
    return out


def _request_row(cats: tuple[str, ...]) -> list[int]:
    """A harmful request's category row: its categories 1, the others 0; a request the
    rules gave no category is unknown (-1) to every request head."""
    if not cats:
        return [-1] * len(REQUEST_IDS) + [0, 0]
    return [int(c in cats) for c in REQUEST_IDS] + [0, 0]


@dataclass
class InputSet:
    """The input classifier's training texts, labels, and the category label matrix
    (columns `categories.HARMFUL_IDS`: 1, 0, or -1 unknown)."""

    texts: list[str]
    labels: list[int]
    categories: np.ndarray


def input_training_set(data: RealWorldData, augment: int, heldout: Sequence[str],
                       seed: int) -> InputSet:
    """The input classifier's training texts, labels and categories."""
    names, _ = augment_converters(heldout)
    req_rows = [_request_row(c) for c in data.train_harmful_categories]
    filled = fill_templates(data.train_templates, data.train_harmful, seed)
    copies = min(augment, len(names)) if names else 0
    harm = (data.train_harmful + data.train_templates + data.train_injections
            + [t for t, _ in filled] + disguise(data.train_harmful, names, augment, seed))
    t_row = [0] * len(REQUEST_IDS) + [1, 0]
    rows = (req_rows + [t_row] * len(data.train_templates)
            + [[0] * len(REQUEST_IDS) + [0, 1]] * len(data.train_injections)
            + [req_rows[i][:-2] + [1, 0] for _, i in filled]
            + [r for r in req_rows for _ in range(copies)])
    # As many disguised harmless texts as harmful ones, so a disguise is not harm in itself.
    benign_src = data.train_benign[:max(len(data.train_harmful), 1)]
    benign = (data.train_benign + data.train_lookalikes * LOOKALIKE_WEIGHT
              + disguise(benign_src + data.train_lookalikes, names, augment, seed + 1))
    # Each clean e-mail also appears injected, so its own words carry no signal; repeating
    # it (a weight, for a fit without sample weights) makes "an e-mail" lean harmless
    # unless an injected instruction says otherwise. Without it most unseen clean e-mails
    # scored above a threshold calibrated on short instructions.
    benign += data.train_clean_emails * CLEAN_EMAIL_WEIGHT
    cats = np.array(rows + [[0] * len(HARMFUL_IDS)] * len(benign), dtype=np.int64)
    return InputSet(harm + benign, [1] * len(harm) + [0] * len(benign), cats)


def input_training_texts(data: RealWorldData, augment: int, heldout: Sequence[str],
                         seed: int) -> tuple[list[str], list[int]]:
    """The input classifier's training texts and labels (`input_training_set` without the
    categories)."""
    s = input_training_set(data, augment, heldout, seed)
    return s.texts, s.labels
