"""Synthetic classifier data from a constitution: train/val/test JSONL and a manifest.

    generate_dataset(default_constitution(), "world", "data/world-0", n_per_category=200)

writes `train.jsonl`, `val.jsonl`, `test.jsonl` and `manifest.json` into the directory.
The constitution decides every label: a category's records are harmful (1) when it is
listed under `harmful` and harmless (0) when under `harmless`, whatever the backend
draws for it. Two backends draw the requests:

- `world`: the synthetic world's hazards, look-alikes and utility tasks, plain, in the
  world's jailbreak families, or through registry converters (see `world_backend`).
- `llm`: any ChatModel expands each category's description and examples into requests
  (see `llm_backend`); registry converters disguise a share of them.

Every text appears once (deduplicated after normalising case and whitespace). Splits are
stratified by category; records that name a world hazard are split by hazard, so the
hazards of the test split are never seen in training. Records in a held-out family go
to test only. The same seed gives byte-identical files. The directory appears whole or
not at all: everything is written into a temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from swisscheese.constitution.schema import Category, Constitution
from swisscheese.data.converters import CONVERTERS, Converter, ConverterStack, get_converter
from swisscheese.data.converters import list_converters as _registered
from swisscheese.data.records import PLAIN, SPLITS, Record, read_jsonl, write_jsonl
from swisscheese.data.world_backend import WORLD_FAMILIES
from swisscheese.fileio import refuse_nonempty_dir, write_directory_atomically
from swisscheese.models.base import ChatModel, GenerationParams
from swisscheese.progress import Progress, step
from swisscheese.registry import Registry
from swisscheese.world.core import World
from swisscheese.world.language import Language

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)  # train, val, test
DEFAULT_CONVERT_SHARE = 0.3
MANIFEST = "manifest.json"
FORMAT = "swisscheese-data/1"
RESPOND_BATCH = 8
T = TypeVar("T")



class OutputExistsError(ValueError):
    """The output directory holds files and replacing it was not asked for."""


class Backend(Protocol):
    """Where requests come from; see WorldBackend and LLMBackend."""

    name: str
    source: str

    def describe(self) -> dict[str, object]: ...

    def supports(self, category: Category) -> bool: ...

    def hazard_groups(self) -> dict[str, list[str]]: ...

    def velsh(self) -> Language | None: ...

    def records(self, category: Category, label: int, n: int, rng: random.Random,
                converters: Mapping[str, Converter], keep: Callable[[Record], bool], *,
                convert_share: float, is_new: Callable[[str], bool]) -> list[Record]: ...


# ---- options ---------------------------------------------------------------------------------
# The data-backend registry: where requests come from, by name (imported when first used).
DATA_BACKENDS: Registry[Any] = Registry("data backend",
                                        entry_point_group="swisscheese.data_backends")
DATA_BACKENDS.add_lazy("world", "swisscheese.data.world_backend:WorldBackend")
DATA_BACKENDS.add_lazy("llm", "swisscheese.data.llm_backend:LLMBackend")
# What each backend's constructor needs from the caller (the others take a world).
_NEEDS_MODEL = frozenset({"llm"})


def make_backend(name: str, *, model: ChatModel | None = None,
                 world: World | None = None) -> Backend:
    """The backend called `name`; a backend that writes requests (llm) writes with `model`."""
    cls = DATA_BACKENDS.get(name)  # an unknown name lists the registered ones
    if name in _NEEDS_MODEL:
        if model is None:
            raise ValueError(f"the {name} backend needs a model to write requests: "
                             "pass --model SPEC (a model directory or an OpenAI-compatible URL)")
        return cls(model)  # type: ignore[no-any-return]
    return cls(world)  # type: ignore[no-any-return]


def _check_converter(name: str) -> None:
    for part in name.split("+"):
        if part not in CONVERTERS:
            get_converter(part)  # raises the registry's KeyError, which lists the known ones


def resolve_converters(converters: Sequence[str] | None,
                       heldout: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(converters to apply, held-out families), checked and without repeats.

    `converters` None means every registered one; "a+b" is a stack. A held-out name is a
    converter (added to those applied if missing: its records are made, for test only)
    or a world jailbreak family. A converter and a world family of the same name (rot13,
    base64, roleplay, ...) are the same disguise, so holding out one holds out both.
    """
    names = _registered() if converters is None else list(dict.fromkeys(converters))
    for name in names:
        _check_converter(name)
    held = list(dict.fromkeys(heldout))
    for name in held:
        if name == PLAIN:
            raise ValueError("'plain' cannot be held out: it is the undisguised request")
        if name in WORLD_FAMILIES and name not in CONVERTERS:
            continue
        try:
            _check_converter(name)
        except KeyError:
            raise KeyError(f"unknown held-out converter {name!r}; registered converters: "
                           f"{', '.join(_registered())}; world families: "
                           f"{', '.join(WORLD_FAMILIES)}") from None
        if name not in names:
            names.append(name)
    return names, held


def build_converters(names: Sequence[str], seed: int,
                     velsh: Language | None = None) -> dict[str, Converter]:
    """Converter instances by name ("a+b" gives a stack); translation speaks `velsh`."""
    def one(part: str) -> Converter:
        if part == "translation" and velsh is not None:
            return get_converter(part, seed=seed, velsh=velsh)
        return get_converter(part, seed=seed)

    out: dict[str, Converter] = {}
    for name in names:
        parts = [one(p) for p in name.split("+")]
        out[name] = parts[0] if len(parts) == 1 else ConverterStack(parts, seed=seed)
    return out


def check_out_dir(out_dir: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Fail early, before any work, if `out_dir` cannot take the dataset."""
    refuse_nonempty_dir(out_dir, "pass --force to replace it", overwrite=overwrite,
                        error=OutputExistsError)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers (train, val, "
                         f"test) that sum to 1, got {tuple(fractions)}")
    if fractions[0] == 0:
        raise ValueError("the train fraction must be above 0")
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


# ---- splits ----------------------------------------------------------------------------------
def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of `n` items go to train, val and test.

    From three items up, val and test get at least one each (when their fraction is not
    zero), so no split of a category is empty; train keeps at least one.
    """
    if n <= 0:
        return (0, 0, 0)
    val, test = round(n * fractions[1]), round(n * fractions[2])
    if n >= 3:
        val = max(val, 1 if fractions[1] > 0 else 0)
        test = max(test, 1 if fractions[2] > 0 else 0)
    while n - val - test < 1:  # train first: a category with no training data is useless
        if val >= test and val > 0:
            val -= 1
        else:
            test -= 1
    return (n - val - test, val, test)


def _deal(items: Sequence[T], fractions: Sequence[float], rng: random.Random) -> dict[T, str]:
    order = list(items)
    rng.shuffle(order)
    n_train, n_val, _ = split_counts(len(order), fractions)
    return {x: ("train" if i < n_train else "val" if i < n_train + n_val else "test")
            for i, x in enumerate(order)}


def hazard_splits(groups: Mapping[str, Sequence[str]], fractions: Sequence[float],
                  seed: int) -> dict[str, str]:
    """hazard id -> split, dealt within each hazard category so each split gets some of each."""
    out: dict[str, str] = {}
    for gid, hazard_ids in groups.items():
        out.update(_deal(list(hazard_ids), fractions,
                         random.Random(f"swisscheese-data-{seed}-hazards-{gid}")))
    return out


def assign_splits(records: Sequence[Record], *, fractions: Sequence[float], seed: int,
                  by_hazard: Mapping[str, str], heldout: Sequence[str] = ()) -> list[Record]:
    """Each record with its split: held-out family -> test; a known hazard -> that hazard's
    split; the rest dealt at random within its category."""
    held = set(heldout)
    split: dict[int, str] = {}
    rest: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.family in held:
            split[i] = "test"
        elif r.hazard_id is not None and r.hazard_id in by_hazard:
            split[i] = by_hazard[r.hazard_id]
        else:
            rest.setdefault(r.category, []).append(i)
    for cat, idx in rest.items():
        split.update(_deal(idx, fractions, random.Random(f"swisscheese-data-{seed}-split-{cat}")))
    return [r.with_(split=split[i], heldout_family=r.family in held)
            for i, r in enumerate(records)]


# ---- responses -------------------------------------------------------------------------------
def respond(records: Sequence[Record], responder: ChatModel,
            params: GenerationParams | None = None, *, progress: Progress | None = None,
            batch_size: int = RESPOND_BATCH) -> list[Record]:
    """The records with `response` written by `responder`, in batches. A responder with
    `generate_batches` (Ray actors, `swisscheese.raycluster.ModelActors`) gets every
    batch at once and answers them in parallel; each batch is the same call either way."""
    batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    fan_out = getattr(responder, "generate_batches", None)
    all_replies: list[list[Any]] = []
    if callable(fan_out):
        def tick(n: int) -> None:
            if progress:
                progress("respond", min(len(records), n * batch_size), len(records))

        all_replies = fan_out([([r.messages for r in b], params) for b in batches], tick)
    out: list[Record] = []
    for k, batch in enumerate(batches):
        replies = all_replies[k] if callable(fan_out) else \
            responder.generate_batch([r.messages for r in batch], params)
        if len(replies) != len(batch):
            raise ValueError(f"responder {getattr(responder, 'name', responder)!r} returned "
                             f"{len(replies)} replies for {len(batch)} conversations")
        out += [r.with_(response=m.content) for r, m in zip(batch, replies, strict=True)]
        if progress and not callable(fan_out):
            progress("respond", len(out), len(records))
    return out


# ---- counts and files ------------------------------------------------------------------------
def count_records(records: Sequence[Record]) -> dict[str, Any]:
    """Counts per split, label, category and family, overall and within each split."""
    def tally(rs: Sequence[Record]) -> dict[str, Any]:
        return {
            "total": len(rs),
            "label": {str(k): v for k, v in sorted(Counter(r.label for r in rs).items())},
            "category": dict(Counter(r.category for r in rs)),
            "family": dict(sorted(Counter(r.family for r in rs).items())),
        }

    out = tally(records)
    out["split"] = {s: sum(r.split == s for r in records) for s in SPLITS}
    out["by_split"] = {s: tally([r for r in records if r.split == s]) for s in SPLITS}
    return out


def _write_dir(out_dir: Path, records: Sequence[Record], manifest: dict[str, Any],
               overwrite: bool) -> None:
    """Write into a temporary sibling directory, then swap it into place."""

    def write(tmp: Path) -> None:
        for s in SPLITS:
            write_jsonl(tmp / f"{s}.jsonl", [r for r in records if r.split == s])
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        check_out_dir(out_dir, overwrite)  # again: something may have appeared meanwhile

    write_directory_atomically(out_dir, write)


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a generated dataset."""
    return json.loads((Path(out_dir) / MANIFEST).read_text("utf-8"))


def load_dataset(out_dir: str | os.PathLike[str]) -> dict[str, list[Record]]:
    """The records of a generated dataset by split."""
    return {s: read_jsonl(Path(out_dir) / f"{s}.jsonl") for s in SPLITS}


# ---- the whole step --------------------------------------------------------------------------
def _draw(constitution: Constitution, be: Backend, n_per_category: int,
          convs: Mapping[str, Converter], convert_share: float, seed: int,
          progress: Progress | None) -> tuple[list[Record], dict[str, Any]]:
    """Every category's records from the backend, deduplicated across categories; and the
    manifest's figures about them (skipped categories, shortfalls, dropped duplicates)."""
    seen: dict[str, int] = {}  # normalised text -> label of the record that has it
    stats: dict[str, Any] = {"skipped_categories": [], "shortfall": {},
                             "duplicates_dropped": 0, "label_conflicts": 0}

    def keep(r: Record) -> bool:
        if r.key in seen:
            stats["duplicates_dropped"] += 1
            # The same text under both labels: the constitution is ambiguous about it.
            stats["label_conflicts"] += seen[r.key] != r.label
            return False
        seen[r.key] = r.label
        return True

    sections = [(c, 1) for c in constitution.harmful] + [(c, 0) for c in constitution.harmless]
    records: list[Record] = []
    for i, (cat, label) in enumerate(sections, 1):
        if not be.supports(cat):
            stats["skipped_categories"].append(cat.id)
        else:
            rng = random.Random(f"swisscheese-data-{seed}-{cat.id}")
            got = be.records(cat, label, n_per_category, rng, convs, keep,
                             convert_share=convert_share, is_new=lambda k: k not in seen)
            # llm counts requests (its plain records), world counts records.
            made = sum(r.family == PLAIN for r in got) if be.name == "llm" else len(got)
            if made < n_per_category:
                stats["shortfall"][cat.id] = made
            records += got
        step(progress, "generate", i, len(sections))
    return records, stats


def generate_dataset(
    constitution: Constitution,
    backend: str | Backend,
    out_dir: str | os.PathLike[str],
    *,
    n_per_category: int = 200,
    converters: Sequence[str] | None = None,
    heldout_converters: Sequence[str] = (),
    seed: int = 0,
    responder: ChatModel | None = None,
    progress: Progress | None = None,
    model: ChatModel | None = None,
    world: World | None = None,
    split_fractions: Sequence[float] = DEFAULT_FRACTIONS,
    convert_share: float = DEFAULT_CONVERT_SHARE,
    response_params: GenerationParams | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate, split and write a dataset; returns the manifest it wrote.

    `backend` is "world", "llm" (written by `model`) or a Backend instance.
    `n_per_category`: records per category for world; requests per category for llm
    (plus converted copies of about `convert_share` of them). `converters`: registry
    names, None for all. `responder` answers every record (for llm, `model` answers when
    no responder is given); without one `response` stays None. `overwrite` replaces a
    non-empty `out_dir`.
    """
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be at least 1, got {n_per_category}")
    if not 0 <= convert_share <= 1:
        raise ValueError(f"convert_share must be between 0 and 1, got {convert_share}")
    fractions = _check_fractions(split_fractions)
    names, held = resolve_converters(converters, heldout_converters)
    out = Path(out_dir)
    check_out_dir(out, overwrite)
    be = make_backend(backend, model=model, world=world) if isinstance(backend, str) else backend
    convs = build_converters(names, seed, be.velsh())

    records, stats = _draw(constitution, be, n_per_category, convs, convert_share, seed,
                           progress)
    if not records:
        raise ValueError(f"backend {be.name!r} generated no records from constitution "
                         f"{constitution.name!r}: no category links to the world "
                         "(world: {hazard_category|lookalike|utility: ...}); "
                         "try --backend llm")

    by_hazard = hazard_splits(be.hazard_groups(), fractions, seed)
    records = assign_splits(records, fractions=fractions, seed=seed, by_hazard=by_hazard,
                            heldout=held)
    writer = getattr(be, "model", None)  # a backend that writes with a model
    answerer = responder if responder is not None else writer
    if answerer is not None:
        params = response_params or GenerationParams(max_new_tokens=256, temperature=0.0,
                                                     seed=seed)
        records = respond(records, answerer, params, progress=progress)

    used = {r.hazard_id for r in records if r.hazard_id is not None}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "constitution": {"name": constitution.name, "version": constitution.version,
                         "content_hash": constitution.content_hash()},
        "backend": be.describe(),
        "responder": None if answerer is None else getattr(answerer, "name", None),
        "seed": seed,
        "n_per_category": n_per_category,
        "split_fractions": dict(zip(SPLITS, fractions, strict=True)),
        "convert_share": convert_share,
        "converters": names,
        "heldout_converters": held,
        "counts": count_records(records),
        "hazards": {s: sorted(h for h, sp in by_hazard.items() if sp == s and h in used)
                    for s in SPLITS},
        **stats,
        "files": {s: f"{s}.jsonl" for s in SPLITS},
    }
    _write_dir(out, records, manifest, overwrite)
    return manifest
