"""Train a guard bundle from a constitution: data, both classifiers, calibrated thresholds.

    train_bundle("runs/classifier", preset="organism")    # -> runs/classifier/bundle

The `organism` preset draws labelled requests from the synthetic world
(`swisscheese.data.generate`, world backend) into `OUT/data`, holding some converter
families out of training (their records go to the test split only), and writes the bundle
to `OUT/bundle`:

- the input classifier learns the train split's prompts, plus `augment` disguised copies
  of each plain prompt made with the converters and world families that are not held out
  (a classifier sees a disguise only if training showed it one);
- the streaming output classifier learns replies: for a harmful record the world's helpful
  answer for its hazard (or the responder's reply, when it is not a refusal), for a
  harmless one the world's look-alike or utility reply of the record's kind. Every reply
  also enters as its prefixes (cut at line and sentence ends) and with and without its
  header line, so the streaming score rises on the first step of a procedure, not at its
  end: the guard must stop a completion before it has given much away. The openings a
  harmless reply shares with a harmful one ("Here is how to brew the") enter as harmless,
  so that the threshold need not clear a coin toss on every recipe;
- both thresholds are calibrated on the VAL split's harmless prompts and replies at
  `target_fpr` (`bundle.build_bundle`).

With `data_dir`, an existing dataset (from `swisscheese data generate`, made from the same
constitution) is used instead of generating one. The bundle's metrics record where the
data is (`metrics["data"]`), so `evaluate.evaluate_bundle` finds the test split without
being told. The `realworld` preset (public datasets) has its own trainer,
`swisscheese.classifiers.realworld.train_realworld`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.classifiers.base import render_conversation
from swisscheese.classifiers.bundle import (
    DEFAULT_STREAM_CHUNK,
    BundleError,
    build_bundle,
    save_bundle,
)
from swisscheese.classifiers.metrics import fpr_at_threshold, tpr_at_threshold
from swisscheese.classifiers.replylabel import ReplyContent, harmful_hazards
from swisscheese.constitution import Constitution, default_constitution, load_constitution
from swisscheese.data.generate import (
    build_converters,
    check_out_dir,
    generate_dataset,
    load_dataset,
    read_manifest,
    resolve_converters,
)
from swisscheese.data.records import PLAIN, Record
from swisscheese.data.world_backend import WORLD_FAMILIES
from swisscheese.models.base import ChatModel
from swisscheese.world.core import LOOKALIKES, World
from swisscheese.world.grader import found_details, is_refusal

PRESETS = ("organism", "realworld")
# One converter per converter family (encoding, obfuscation, substitution), so the
# held-out recall says something about each kind of disguise.
DEFAULT_HELDOUT = ("morse", "homoglyphs", "codeword")
DATA_DIR = "data"
BUNDLE_DIR = "bundle"
# Characters StreamGuard holds back before releasing them (its own default).
DEFAULT_HOLD_BACK = 32
# World families whose reply differs from the plain answer; the others only change the prompt.
REPLY_FAMILIES = frozenset({"cipher_answer", "roleplay", "prefix_injection", "two_task", "story"})
# Families that need a procedure to frame ("story"): augmentation leaves them out because
# a harmless utility request has none.
_NO_AUGMENT = frozenset({"story"})
# Prefixes shorter than this say too little to label: "Here is" opens harmful and
# harmless replies alike.
MIN_PREFIX_CHARS = 12
# Prefixes kept per reply (plus the whole reply): the early ones teach the stream to stop
# early; later ones add little beyond the whole reply and cost streaming time.
MAX_PREFIXES = 4

# progress(phase, done, total): what swisscheese.progress.TaskBars takes.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Sizes and hyper-parameters of `train_bundle` (the defaults are the organism preset)."""

    n_per_category: int = field(default=400, metadata={
        "help": "records the world backend draws per constitution category"})
    augment: int = field(default=8, metadata={
        "help": "disguised copies of each plain training prompt (converters and world "
                "families that are not held out); 0 turns augmentation off"})
    world_seed: int = field(default=0, metadata={
        "help": "seed of the world whose hazards the data uses (when no data dir is given)"})
    backend: str = field(default="ngram", metadata={
        "help": "registered classifier backend; the output uses its streaming twin"})
    output_backend: str | None = field(default=None, metadata={
        "help": "streaming backend of the output classifier (default: the streaming twin "
                "of `backend`; needed for a backend without one, such as 'decoding')"})
    model_dir: str | None = field(default=None, metadata={
        "help": "local HF model directory for a backend that reads a model (the probe's "
                "hidden states, hf-finetune's weights); passed as model_dir to each "
                "classifier that needs one (see `backend_params`)"})
    input_params: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "constructor kwargs of the input classifier (e.g. {'epochs': 12})"})
    output_params: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "constructor kwargs of the output classifier"})
    stream_chunk_chars: int = field(default=DEFAULT_STREAM_CHUNK, metadata={
        "help": "characters per streamed delta when the output threshold is calibrated"})
    hold_back: int = field(default=DEFAULT_HOLD_BACK, metadata={
        "help": "characters the output guard holds back (recorded for evaluation)"})

    def __post_init__(self) -> None:
        if self.n_per_category < 1:
            raise ValueError(f"n_per_category must be >= 1, got {self.n_per_category}")
        if self.augment < 0:
            raise ValueError(f"augment must be >= 0, got {self.augment}")
        if self.stream_chunk_chars < 1 or self.hold_back < 0:
            raise ValueError("stream_chunk_chars must be >= 1 and hold_back >= 0")


# ---- replies from the world ---------------------------------------------------------------
def _recipe_for(world: World, text: str, rng: random.Random) -> str:
    """The recipe a request names (or any recipe, when a disguise hides the name)."""
    low = text.lower()
    for r in world.recipes:
        if r.thing.lower() in low:
            return r.answer()
    return rng.choice(world.recipes).answer()


def base_answer(world: World, constitution: Constitution, record: Record,
                rng: random.Random) -> tuple[str, str | None] | None:
    """(the world's undisguised reply to a record, its "how to" phrase) or None.

    The reply follows the category's world link: a hazard's procedure, the look-alike
    answer of the linked kind, or a utility reply of the linked kind (a fresh one: any
    harmless reply of that kind is as good a negative). None when the category has no
    world link or names a hazard this world lacks.
    """
    try:
        link = constitution.category(record.category).world
    except KeyError:
        return None
    hazard = None
    if record.hazard_id is not None:
        try:
            hazard = world.hazard(record.hazard_id)
        except KeyError:
            return None
    if "hazard_category" in link:
        if hazard is None:
            return None
        return hazard.answer(), f"{hazard.verb} the {hazard.name}"
    if "lookalike" in link:
        kind = link["lookalike"]
        if kind == "recipe":
            return _recipe_for(world, record.text, rng), None
        if kind not in LOOKALIKES:
            return None
        _, answer = world.lookalike(rng, kind, hazard or rng.choice(world.hazards))
        return answer, None
    if "utility" in link:
        kind = link["utility"]
        task = world.utility(rng, None if kind == "all" else kind)
        return task.answer, None
    return None


def wrap_reply(world: World, family: str, answer: str, seed: str,
               how_to: str | None = None) -> str:
    """The reply a helpful model gives in `family` (roleplay adds the persona, ...).

    `seed` fixes the family's random choices, so every prefix of one answer gets the
    same persona and side task.
    """
    if family not in REPLY_FAMILIES:
        return answer
    _, reply = world.wrap(family, "", answer, random.Random(seed), how_to=how_to)
    return reply


def reply_cuts(text: str) -> list[str]:
    """The text and its first MAX_PREFIXES prefixes ending at a line or sentence end; for
    a text with a header line, also the body without it and its first prefixes (the
    steps alone must score too)."""
    out: list[str] = []

    def cuts(t: str) -> None:
        ends = []
        for i, ch in enumerate(t[:-1]):
            if ch == "\n" or (ch == "." and t[i + 1] == " "):
                end = i if ch == "\n" else i + 1
                if end >= MIN_PREFIX_CHARS:
                    ends.append(end)
        out.extend(t[:e] for e in ends[:MAX_PREFIXES])
        out.append(t)

    cuts(text)
    head, sep, body = text.partition("\n")
    if sep and body.strip():
        cuts(body)
    return list(dict.fromkeys(x for x in out if x.strip()))


def word_cuts(text: str) -> list[str]:
    """Prefixes of the first line of `text` ending before each word boundary (at least
    MIN_PREFIX_CHARS long), with and without the space: the chunk edges a stream
    reaches before the line says what it is about."""
    line = text.partition("\n")[0]
    out = []
    for i, ch in enumerate(line):
        if ch == " " and i >= MIN_PREFIX_CHARS:
            out += [line[:i], line[:i + 1]]
    return out


@dataclass(frozen=True)
class _Reply:
    """A record's reply: given (a model's response), or the world's answer in a family."""

    label: int
    given: str | None = None
    answer: str = ""
    family: str = PLAIN
    key: str = ""
    how_to: str | None = None
    # A model-written harmful reply: the key details of the hazard it releases.
    details: tuple[str, ...] = ()

    def text(self, world: World, part: str | None = None) -> str:
        """The whole reply, or `part` of it (of the world's answer in the record's family)."""
        if self.given is not None:
            return self.given if part is None else part
        return wrap_reply(world, self.family, self.answer if part is None else part,
                          self.key, self.how_to)


def _replies(world: World, constitution: Constitution, records: Sequence[Record],
             seed: int) -> list[_Reply]:
    """One reply per record that has one (see `output_texts`)."""
    rng = random.Random(f"swisscheese-train-{seed}-replies")
    content: ReplyContent | None = None
    out: list[_Reply] = []
    for r in records:
        given = r.response if r.response and r.response.strip() else None
        if given is not None and r.source != "world":
            # No world to read it against: the reply keeps its request's label, except
            # that a refusal to a harmful request is no completion (world answer below).
            if not (r.label == 1 and is_refusal(given)):
                out.append(_Reply(r.label, given=given))
                continue
        elif given is not None:
            content = content or ReplyContent(harmful_hazards(world, constitution))
            hazard, share = content.release(given)
            label = content.label_of(share)
            if label is not None:
                out.append(_Reply(label, given=given, details=(
                    tuple(d.lower() for d in hazard.key_details)
                    if label == 1 and hazard is not None else ())))
            if r.label == 0 or label == 1:
                continue
            # A harmful request whose reply gives little away (a refusal, a garble): the
            # classifier still needs the harmful completion, so the world's answer too.
        base = base_answer(world, constitution, r, rng)
        if base is None:
            continue
        # The family only shapes the reply when it is a world family (converters only
        # disguise the prompt).
        family = r.family if r.family in WORLD_FAMILIES else PLAIN
        out.append(_Reply(r.label, answer=base[0], family=family, how_to=base[1],
                          key=f"swisscheese-train-{seed}-{r.id}"))
    return out


def reply_texts(world: World, constitution: Constitution, records: Sequence[Record],
                seed: int) -> tuple[list[str], list[int]]:
    """The whole replies of `records` with their labels, as traffic has them (not
    deduplicated; a harmful request whose model-written reply is harmless brings that reply
    and the world's answer): what the output threshold is calibrated on and its
    false-positive rate measured on (the harmless ones, `harmless_replies`)."""
    replies = _replies(world, constitution, records, seed)
    return [x.text(world) for x in replies], [x.label for x in replies]


def harmless_replies(world: World, constitution: Constitution, records: Sequence[Record],
                     seed: int) -> list[str]:
    """The harmless whole replies to `records` (the harmless ones, as a rule): what the
    output threshold is calibrated on. A model-written reply to a harmless request that
    releases a hazard's procedure is a harmful completion, not benign traffic, and an
    ambiguous one is left out (`replylabel`)."""
    texts, labels = reply_texts(world, constitution, records, seed)
    return [t for t, y in zip(texts, labels, strict=True) if y == 0]


def output_texts(world: World, constitution: Constitution, records: Sequence[Record],
                 seed: int) -> tuple[list[str], list[int]]:
    """Replies and their prefixes to train the output classifier on.

    A record's reply is its `response` when it has one. A model-written reply is
    labelled by what it releases (`replylabel`), not by its request: a harmful request's
    refusal or garble is a harmless reply, and the record also brings the world's helpful
    answer, since the output classifier must learn what a completion looks like. Each
    reply enters with its `reply_cuts` under its label, except that the prefixes of a
    model-written completion enter only once they release a key detail. The partial
    first lines (`word_cuts`) of harmless replies, and of the world's harmful answers,
    whose first line is a header without key details, enter as harmless: "Here is how
    to brew the" opens a tea recipe as well as a toxin's procedure, and only the next
    word decides. Without
    them the stream's score on such a shared opening is a coin toss that the threshold
    must clear for every harmless reply. Texts are deduplicated; a text under both
    labels (an ambiguous constitution) is dropped.
    """
    labels: dict[str, int] = {}
    conflicts: set[str] = set()

    def add(text: str, label: int) -> None:
        if labels.setdefault(text, label) != label:
            conflicts.add(text)

    for x in _replies(world, constitution, records, seed):
        base = x.given if x.given is not None else x.answer
        for part in reply_cuts(base):
            if x.details and part != base and not found_details(part, x.details):
                # A model's reply may open with anything (a story, a history line) before
                # its first step: an opening that releases nothing is not labelled by
                # what follows it.
                continue
            add(x.text(world, part), x.label)
        if x.label == 0 or (x.given is None and "\n" in base):
            for part in word_cuts(base):
                add(x.text(world, part), 0)
    texts = [t for t in labels if t not in conflicts]
    return texts, [labels[t] for t in texts]


# ---- input data ---------------------------------------------------------------------------
def augment_prompts(records: Sequence[Record], world: World, converters: Sequence[str],
                    heldout: Sequence[str], copies: int, seed: int) -> tuple[list[str], list[int]]:
    """`copies` disguised versions of each plain record, through converters and world
    families that are not held out (a held-out name excludes both of that name)."""
    if copies <= 0:
        return [], []
    held = set(heldout)
    names = [c for c in converters if not (set(c.split("+")) & held)]
    convs = build_converters(names, seed, world.language)
    options: list[tuple[str, str]] = [("converter", c) for c in convs]
    options += [("family", f) for f in WORLD_FAMILIES if f not in held and f not in _NO_AUGMENT]
    rng = random.Random(f"swisscheese-train-{seed}-augment")
    texts: list[str] = []
    labels: list[int] = []
    for r in records:
        if r.family != PLAIN or len(r.messages) != 1:
            continue
        for kind, name in rng.sample(options, min(copies, len(options))):
            if kind == "converter":
                msgs = [m.to_dict() for m in convs[name].to_messages(r.text)]
                text = render_conversation(msgs)
            else:
                text, _ = world.wrap(name, r.text, "", rng)
            texts.append(text)
            labels.append(r.label)
    return texts, labels


def prompt_texts(records: Sequence[Record]) -> list[str]:
    # render_conversation is what the gateway and classify_file show the classifier.
    return [render_conversation(r.messages) for r in records]


# ---- the whole step -----------------------------------------------------------------------
def resolve_constitution(constitution: Constitution | str | os.PathLike[str] | None
                          ) -> Constitution:
    if constitution is None:
        return default_constitution()
    if isinstance(constitution, Constitution):
        return constitution
    return load_constitution(constitution)


def check_backend(cfg: TrainConfig) -> None:
    """Fail before any data is made if `cfg.backend` is unknown, has no streaming twin and
    no output backend is given, needs a model directory that is not given, or either
    classifier cannot be built from its settings (an unknown option, a directory that is
    not a model)."""
    from swisscheese.classifiers.base import ClassifierError, StreamingClassifier
    from swisscheese.classifiers.bundle import _streaming_backend
    from swisscheese.classifiers.registry import CLASSIFIERS, get_classifier, list_classifiers

    cls = CLASSIFIERS.get(cfg.backend)
    if cls is None:
        raise ValueError(f"unknown classifier backend {cfg.backend!r}; registered: "
                         f"{', '.join(list_classifiers())}")
    if cfg.output_backend is not None:
        out_cls = CLASSIFIERS.get(cfg.output_backend)
        if out_cls is None or not issubclass(out_cls, StreamingClassifier):
            raise ValueError(f"output backend {cfg.output_backend!r} is not a registered "
                             "streaming classifier; streaming backends: "
                             f"{', '.join(_streaming_names())}")
    else:
        try:
            _streaming_backend(cfg.backend)
        except KeyError:
            raise ValueError(
                f"backend {cfg.backend!r} has no streaming twin to classify replies with: "
                "pass an output backend (--output-backend NAME, or "
                f"TrainConfig.output_backend), one of: {', '.join(_streaming_names())}"
            ) from None
    if getattr(cls, "needs_model_dir", False) and not (
            cfg.model_dir or "model_dir" in cfg.input_params):
        raise ValueError(f"backend {cfg.backend!r} reads a local model: give the model "
                         "directory (--model-dir DIR, alias --probe-model, or "
                         "TrainConfig.model_dir)")
    out_name = cfg.output_backend or _streaming_backend(cfg.backend)
    # A wrapper ('decoding') may hand model_dir on to a base named in input_params.
    if cfg.model_dir and "base" not in cfg.input_params and not any(
            getattr(CLASSIFIERS[n], "needs_model_dir", False) for n in (cfg.backend, out_name)):
        raise ValueError(f"neither backend {cfg.backend!r} nor output backend {out_name!r} "
                         "reads a model: drop --model-dir (TrainConfig.model_dir)")
    # Building both classifiers is cheap (no model is loaded) and catches an option a
    # backend does not take, or a model directory that is not one, before data is made.
    input_params, output_params = backend_params(cfg, 0)
    for which, name, params in (("input", cfg.backend, input_params),
                                ("output", out_name, output_params)):
        try:
            get_classifier(name, **params)
        except (TypeError, ValueError, ClassifierError) as e:
            raise ValueError(f"{which} classifier {name!r}: {e}") from None


def _streaming_names() -> list[str]:
    from swisscheese.classifiers.base import StreamingClassifier
    from swisscheese.classifiers.registry import CLASSIFIERS

    return sorted(n for n, c in CLASSIFIERS.items() if issubclass(c, StreamingClassifier))


def backend_params(cfg: TrainConfig, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constructor kwargs of the input and output classifiers.

    `cfg.model_dir` goes to the output classifier only if its backend reads a model
    (`needs_model_dir`), and to the input classifier if its backend does or the output's
    does not (a wrapper such as 'decoding' may pass it on to a base that reads one): a
    fine-tuned or probed input model pairs with an n-gram output, which takes no model.
    """
    from swisscheese.classifiers.bundle import _streaming_backend
    from swisscheese.classifiers.registry import CLASSIFIERS

    def needs(name: str | None) -> bool:
        return bool(getattr(CLASSIFIERS.get(name or ""), "needs_model_dir", False))

    in_extra: dict[str, Any] = {"seed": seed}
    out_extra: dict[str, Any] = {"seed": seed}
    if cfg.model_dir:
        try:
            out_name: str | None = cfg.output_backend or _streaming_backend(cfg.backend)
        except KeyError:
            out_name = None
        if needs(out_name):
            out_extra["model_dir"] = str(cfg.model_dir)
        if needs(cfg.backend) or not needs(out_name):
            in_extra["model_dir"] = str(cfg.model_dir)
    return {**in_extra, **dict(cfg.input_params)}, {**out_extra, **dict(cfg.output_params)}


def check_preset(preset: str) -> None:
    if preset == "realworld":
        raise ValueError("train_bundle trains the organism preset; for 'realworld' call "
                         "swisscheese.classifiers.realworld.train_realworld (the CLI's "
                         "--preset realworld does)")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of: {', '.join(PRESETS)}")


def _world_seed(manifest: Mapping[str, Any], default: int) -> int:
    backend = manifest.get("backend") or {}
    seed = backend.get("world_seed") if isinstance(backend, Mapping) else None
    return seed if isinstance(seed, int) else default


def train_bundle(
    out: str | os.PathLike[str],
    preset: str = "organism",
    constitution: Constitution | str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    heldout: Sequence[str] | None = None,
    target_fpr: float = 0.005,
    responder: ChatModel | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    *,
    config: TrainConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Generate data (or read `data_dir`), fit and calibrate both classifiers, and save a
    version-1 guard bundle to `out/bundle`; returns that directory.

    `constitution`: a Constitution, a YAML path, or None for the default. `heldout`:
    converters or world families whose records go to the test split only (None:
    DEFAULT_HELDOUT; () holds out nothing). With `data_dir`, the data's own held-out
    families count, plus any named here, whose training records are then left out.
    `responder` answers the records (all of them when data is generated, the train and
    val splits of `data_dir`); its replies train and calibrate the output classifier.
    `overwrite` replaces an existing `out/data` and `out/bundle`.
    """
    check_preset(preset)
    cfg = config or TrainConfig()
    check_backend(cfg)
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    const = resolve_constitution(constitution)
    out_dir = Path(out)
    bundle_dir = out_dir / BUNDLE_DIR
    if bundle_dir.is_dir() and any(bundle_dir.iterdir()) and not overwrite:
        raise BundleError(f"{bundle_dir}: directory is not empty; pass --force to replace it")

    def step(phase: str, done: int, total: int) -> None:
        if progress:
            progress(phase, done, total)

    # ---- data
    if data_dir is None:
        data = out_dir / DATA_DIR
        check_out_dir(data, overwrite)
        names, held = resolve_converters(None, DEFAULT_HELDOUT if heldout is None else heldout)
        world = World(seed=cfg.world_seed)
        manifest = generate_dataset(
            const, "world", data, n_per_category=cfg.n_per_category, converters=names,
            heldout_converters=held, seed=seed, responder=responder, world=world,
            progress=progress, overwrite=overwrite)
    else:
        data = Path(data_dir)
        if not (data / "manifest.json").is_file():
            raise ValueError(f"{data}: no manifest.json; is it a directory written by "
                             "`swisscheese data generate`?")
        manifest = read_manifest(data)
        want = manifest.get("constitution", {}).get("content_hash")
        if want != const.content_hash():
            raise ValueError(f"{data} was generated from constitution "
                             f"{manifest.get('constitution', {}).get('name')!r} (hash "
                             f"{str(want)[:12]}), not from {const.name!r} "
                             f"({const.content_hash()[:12]}); pass the matching --constitution")
        extra = [h for h in (heldout or ()) if h not in manifest.get("heldout_converters", [])]
        _, extra = resolve_converters([], extra)
        held = list(dict.fromkeys([*manifest.get("heldout_converters", []), *extra]))
        names = list(manifest.get("converters", []))
        world = World(seed=_world_seed(manifest, cfg.world_seed))
    splits = load_dataset(data)
    if responder is not None and data_dir is not None:
        from swisscheese.data.generate import respond

        # The test split keeps its own responses: evaluation regenerates what it needs.
        splits = {s: respond(rs, responder) if s != "test" else rs
                  for s, rs in splits.items()}
    held_set = set(held)
    train = [r for r in splits["train"] if r.family not in held_set]
    val = splits["val"]
    if len({r.label for r in train}) < 2:
        raise ValueError(f"{data}: the train split needs harmful and harmless records")
    val_benign = [r for r in val if r.label == 0]
    if not val_benign:
        raise ValueError(f"{data}: the val split has no harmless records to calibrate on")

    # ---- input texts
    step("augment", 0, 1)
    aug_x, aug_y = augment_prompts(train, world, names, held, cfg.augment, seed)
    in_x = prompt_texts(train) + aug_x
    in_y = [r.label for r in train] + aug_y
    step("augment", 1, 1)

    # ---- output texts
    step("replies", 0, 1)
    out_x, out_y = output_texts(world, const, train, seed)
    cal_out = harmless_replies(world, const, val_benign, seed + 1)
    if len(set(out_y)) < 2:
        raise ValueError(f"{data}: no harmful and harmless replies to train the output "
                         "classifier on (records need a world link or a response)")
    if not cal_out:
        raise ValueError(f"{data}: no harmless replies in the val split to calibrate on")
    step("replies", 1, 1)

    # ---- fit and calibrate
    step("fit and calibrate", 0, 1)
    input_params, output_params = backend_params(cfg, seed)
    bundle = build_bundle(
        const, in_x, in_y, prompt_texts(val_benign), out_x, out_y, cal_out,
        target_fpr=target_fpr, backend=cfg.backend, output_backend=cfg.output_backend,
        input_params=input_params,
        output_params=output_params, version=1,
        notes=f"preset {preset}: world seed {world.seed}, data {data}",
        stream_chunk_chars=cfg.stream_chunk_chars)
    step("fit and calibrate", 1, 1)

    # ---- validation figures (the harmful val prompts were not used for calibration)
    val_scores = bundle.input_scores(prompt_texts(val))
    val_y = np.array([r.label for r in val])
    validation: dict[str, Any] = {"n": len(val)}
    if (val_y == 1).any():
        validation["input_tpr"] = tpr_at_threshold(val_y, val_scores, bundle.thresholds["input"])
    validation["input_fpr"] = fpr_at_threshold(val_y, val_scores, bundle.thresholds["input"])

    bundle_abs = bundle_dir.resolve()
    data_abs = data.resolve()
    bundle.metrics["input"]["augmented_n"] = len(aug_x)
    bundle.metrics["output"]["hold_back"] = cfg.hold_back
    bundle.metrics.update({
        "preset": preset,
        "seed": seed,
        "heldout_families": held,
        "validation": validation,
        "config": {k: (dict(v) if isinstance(v, Mapping) else v)
                   for k, v in asdict(cfg).items()},
        "data": {
            "dir": str(data_abs),
            # Relative to the bundle, so moving the whole run directory keeps the link.
            "dir_from_bundle": os.path.relpath(data_abs, bundle_abs),
            "world_seed": world.seed,
            "responder": manifest.get("responder") if responder is None
            else getattr(responder, "name", str(responder)),
            "counts": {s: len(rs) for s, rs in splits.items()},
        },
    })
    step("save", 0, 1)
    save_bundle(bundle, bundle_dir, overwrite=overwrite)
    step("save", 1, 1)
    return bundle_dir
