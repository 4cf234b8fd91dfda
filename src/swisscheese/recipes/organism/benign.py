"""Benign traffic at scale: organism conversations a bundle never trained or calibrated on,
to measure a false-positive rate of 0.05% with an interval that means something.

`benign_traffic` draws fresh harmless records from the world backend (utility tasks,
look-alikes, multi-turn and buried conversations, requests disguised by the converters the
bundle trained on) with a seed of its own, drops every one whose text is in any split of
the bundle's data (train, val or test: the world's templates repeat, so some draws are
the very texts the bundle saw), and pairs each with the world's harmless reply to it. The
result is what a fully guarded FPR is measured on: a conversation is refused when the
input layer flags it or the output layer flags its reply.

Held-out converters (Morse by default) are left out: an encoding no classifier trained on
scores arbitrarily, and real benign traffic is rarely in Morse code; `families` says which
families the set covers.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swisscheese.constitution import Constitution
from swisscheese.data.generate import generate_dataset, load_dataset, read_manifest
from swisscheese.data.records import Record
from swisscheese.progress import Progress
from swisscheese.recipes.organism.replies import replies_of
from swisscheese.recipes.organism.train import world_seed_of
from swisscheese.world.core import World

# Far from the seeds training uses (0, 1, ...), so the draws are the world's, not the
# training set's, wherever the texts can differ.
DEFAULT_SEED = 20_260
# Draws per record wanted: dedup within a category and against the bundle's data loses some.
OVERDRAW = 1.4


@dataclass
class BenignTraffic:
    """Harmless conversations with the world's reply to each, and how they were drawn."""

    records: list[Record]
    conversations: list[list[dict[str, str]]]  # per record: the turns the reply answers
    replies: list[str]
    seen_dropped: int  # draws whose text is in the bundle's data
    families: dict[str, int]


def benign_traffic(data_dir: Path, constitution: Constitution, n: int, out_dir: Path, *,
                   seed: int = DEFAULT_SEED, progress: Progress | None = None
                   ) -> BenignTraffic:
    """`n` harmless conversations none of which is in `data_dir` (a bundle's data), drawn
    into `out_dir` (replaced); ValueError if the world cannot give that many."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    manifest = read_manifest(data_dir)
    if seed == manifest.get("seed"):
        raise ValueError(f"seed {seed} is the seed {data_dir} was drawn with; pick another")
    world = World(seed=world_seed_of(manifest, 0))
    seen = {r.key for rs in load_dataset(data_dir).values() for r in rs}
    held = set(manifest.get("heldout_converters", []))
    converters = [c for c in manifest.get("converters", []) if c not in held]
    per = math.ceil(OVERDRAW * n / max(1, len(constitution.harmless)))
    generate_dataset(constitution, "world", out_dir, n_per_category=per,
                     converters=converters, heldout_converters=(), seed=seed, world=world,
                     progress=progress, overwrite=True)
    drawn = [r for rs in load_dataset(out_dir).values() for r in rs if r.label == 0]
    fresh = [r for r in drawn if r.key not in seen]
    if len(fresh) < n:
        raise ValueError(f"the world gave {len(fresh)} harmless conversations not in "
                         f"{data_dir}, fewer than the {n} asked for")
    random.Random(seed).shuffle(fresh)
    return _with_replies(world, constitution, fresh[:n], len(drawn) - len(fresh), seed)


def _with_replies(world: World, constitution: Constitution, records: Sequence[Record],
                  seen_dropped: int, seed: int) -> BenignTraffic:
    """The records with the world's harmless reply to each (a record whose reply the
    world labels other than harmless is left out: it would not be benign traffic)."""
    # replies_of skips records it has no reply for, so replies are matched to records by
    # conversation (records are unique by text, hence by conversation).
    by_conv = {tuple(m["content"] for m in r.messages): r for r in records}
    keep, convs, replies = [], [], []
    for x in replies_of(world, constitution, records, seed):
        r = by_conv.get(tuple(m["content"] for m in x.conversation))
        if r is not None and x.label == 0:
            keep.append(r)
            convs.append([dict(m) for m in x.conversation])
            replies.append(x.text(world))
    families = dict(Counter(r.family for r in keep))
    return BenignTraffic(keep, convs, replies, seen_dropped, families)
