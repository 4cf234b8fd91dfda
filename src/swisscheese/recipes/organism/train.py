"""Train a guard bundle from a constitution: data, both classifiers, calibrated thresholds.

    train_bundle("runs/classifier")    # -> runs/classifier/bundle

The `organism` recipe draws labelled requests from the synthetic world
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
  `target_fpr` (`bundles.build_bundle`).

With `data_dir`, an existing dataset (from `swisscheese data generate`, made from the same
constitution) is used instead of generating one. The bundle's training record says where
the data is (`training.data`), so `evaluate.evaluate_organism` finds the test split
without being told.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.bundles import (
    DEFAULT_STREAM_CHUNK,
    BundleError,
    GuardBundle,
    TrainingRecord,
    build_bundle,
    save_bundle,
)
from swisscheese.classifiers.backends.cascade import DEFAULT_STAGE1
from swisscheese.classifiers.base import OUTPUT_CONTEXTS, render_conversation
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.classifiers.metrics import fpr_at_threshold, tpr_at_threshold
from swisscheese.classifiers.registry import (
    CLASSIFIERS,
    get_classifier,
    is_streaming,
    streaming_names,
    streaming_twin,
)
from swisscheese.constitution import Constitution, default_constitution, load_constitution
from swisscheese.data.generate import (
    build_converters,
    check_out_dir,
    generate_dataset,
    load_dataset,
    read_manifest,
    resolve_converters,
    respond,
)
from swisscheese.data.records import PLAIN, Record
from swisscheese.data.world_backend import WORLD_FAMILIES
from swisscheese.fileio import refuse_nonempty_dir
from swisscheese.models.base import ChatModel
from swisscheese.progress import Progress, step
from swisscheese.recipes.organism.replies import (
    OutputPairs,
    craft_prompts,
    harmless_pairs,
    open_craft_pairs,
    output_pairs,
)
from swisscheese.recipes.organism.replylabel import HARMFUL_SHARE, ReplyContent
from swisscheese.world.core import World
from swisscheese.world.families import NEEDS_SUBJECT, NEW_ATTACK_FAMILIES

# One converter per converter family (encoding, obfuscation, substitution), so the
# held-out recall says something about each kind of disguise.
DEFAULT_HELDOUT = ("morse", "homoglyphs", "codeword")
DATA_DIR = "data"
BUNDLE_DIR = "bundle"
# Characters StreamGuard holds back before releasing them (its own default).
DEFAULT_HOLD_BACK = 32
# Families that need a procedure to frame ("story"): augmentation leaves them out because
# a harmless utility request has none.
_NO_AUGMENT = frozenset({"story"})
# Context families the input classifier does not train on, as a new attack would not be
# in its data: their records (harmful and harmless) still train the output classifier.
DEFAULT_INPUT_HELDOUT = NEW_ATTACK_FAMILIES
# The input backend of the default bundle: the n-gram behind the decoders (Morse, base64,
# spaced letters, Caesar shifts and reversal, code words). A learned classifier reads only
# the disguises training showed it (the plain n-gram's recall on held-out Morse is 0.000);
# these can be undone.
DEFAULT_BACKEND = "decoding"
# The default input classifier's own options, unless the user gives them: the n-gram also
# reads the last message as features of its own, so a request at the end of a long chat is
# not diluted (trained-family TPR 0.972 -> 1.000 on seed 0 at val FPR 0.0042; buried 0.65
# -> 1.00; the held-out indirect family fell 0.95 -> 0.53, left to the exchange output).
# One definition: the input cascade's default stage 1 is the same classifier.
DEFAULT_INPUT_PARAMS: dict[str, Any] = DEFAULT_STAGE1

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
    backend: str = field(default=DEFAULT_BACKEND, metadata={
        "help": "registered classifier backend; the output uses its streaming twin (the "
                "default 'decoding' undoes Morse, base64, spaced letters, Caesar shifts, "
                "reversal and stated code words, then scores with the n-gram; its output is "
                "ngram-stream)"})
    output_backend: str | None = field(default=None, metadata={
        "help": "streaming backend of the output classifier (default: the streaming twin "
                "of `backend`, or of the backend a wrapper such as 'decoding' wraps)"})
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
    input_open_crafts: int | None = field(default=None, metadata={
        "help": "harmless open crafts a category (`World.open_crafts`) whose requests the "
                "input classifier trains on beside the world's 16 crafts (default: a tenth "
                "of n_per_category, 40 at 400; 0: none; with none the stop 25 bundle "
                "flagged 0.76 of plain requests for crafts it never saw)"})
    output_open_crafts: int = field(default=0, metadata={
        "help": "open crafts and open hazards a category (`World.open_hazards`) added to "
                "the output classifier's data, open calibration crafts with them; 0 adds "
                "none. Experimental: on the stop 26 data 40 cut the n-gram output "
                "classifiers' stops of unseen hazards (see the README)"})
    output_first_user: bool = field(default=True, metadata={
        "help": "an exchange n-gram output (ngram-stream) also reads the first user message "
                "as a feature group of its own (`context_first_user`): calibrated alone on "
                "stop 27's fresh traffic it stopped more harmful replies (0.855 -> 0.869) at "
                "the same or a lower FPR on two fresh sets; False is the stop 26 classifier"})
    output_context: str = field(default="exchange", metadata={
        "help": "what the output classifier reads: 'exchange' (each reply delta in the "
                "context of the whole conversation) or 'reply' (the reply alone)"})
    input_heldout: tuple[str, ...] = field(default=DEFAULT_INPUT_HELDOUT, metadata={
        "help": "world families the input classifier never trains on (the output "
                "classifier does); () for none"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_heldout", tuple(self.input_heldout))
        if self.output_context not in OUTPUT_CONTEXTS:
            raise ValueError(f"output_context must be one of {', '.join(OUTPUT_CONTEXTS)}, "
                             f"got {self.output_context!r}")
        unknown = [f for f in self.input_heldout if f not in WORLD_FAMILIES]
        if unknown:
            raise ValueError(f"input_heldout names unknown world families {unknown}; "
                             f"known: {', '.join(WORLD_FAMILIES)}")
        if self.n_per_category < 1:
            raise ValueError(f"n_per_category must be >= 1, got {self.n_per_category}")
        if self.augment < 0:
            raise ValueError(f"augment must be >= 0, got {self.augment}")
        if self.input_crafts() < 0 or self.output_open_crafts < 0:
            raise ValueError("input_open_crafts and output_open_crafts must be >= 0")
        if self.stream_chunk_chars < 1 or self.hold_back < 0:
            raise ValueError("stream_chunk_chars must be >= 1 and hold_back >= 0")

    def input_crafts(self) -> int:
        """The open crafts a category the input classifier trains on."""
        if self.input_open_crafts is None:
            return self.n_per_category // 10
        return self.input_open_crafts

    def output_name(self) -> str:
        """The output classifier's backend: `output_backend`, else the streaming twin of
        `backend` (KeyError when it has none)."""
        return self.output_backend or streaming_twin(self.backend, self.input_params)


# ---- input data ---------------------------------------------------------------------------
def input_training(records: Sequence[Record], world: World, converters: Sequence[str],
                   heldout: Sequence[str], copies: int, seed: int, open_crafts: int
                   ) -> tuple[list[str], list[int]]:
    """The input classifier's training texts and labels: the records, their disguised
    copies (`augment_prompts`) and harmless craft requests (`craft_prompts`, the world's
    and `open_crafts` open ones a category), families in `heldout` left out of both
    additions."""
    aug_x, aug_y = augment_prompts(records, world, converters, heldout, copies, seed)
    crafts = craft_prompts(world, seed, heldout, open_crafts)
    return (prompt_texts(records) + aug_x + crafts,
            [r.label for r in records] + aug_y + [0] * len(crafts))


def augment_prompts(records: Sequence[Record], world: World, converters: Sequence[str],
                    heldout: Sequence[str], copies: int, seed: int) -> tuple[list[str], list[int]]:
    """`copies` disguised versions of each plain record, through converters and world
    families that are not held out (a held-out name excludes both of that name)."""
    if copies <= 0:
        return [], []
    held = set(heldout)
    names = [c for c in converters if not (set(c.split("+")) & held)]
    convs = build_converters(names, seed, world.language)
    families = [f for f in WORLD_FAMILIES if f not in held and f not in _NO_AUGMENT]
    rng = random.Random(f"swisscheese-train-{seed}-augment")
    texts: list[str] = []
    labels: list[int] = []
    for r in records:
        if r.family != PLAIN or len(r.messages) != 1:
            continue
        # The context families rename what a request names: only a request that names a
        # subject of the world can go through them.
        subject = world.subject_in(r.text, r.hazard_id)
        options: list[tuple[str, str]] = [("converter", c) for c in convs]
        options += [("family", f) for f in families if subject or f not in NEEDS_SUBJECT]
        for kind, name in rng.sample(options, min(copies, len(options))):
            if kind == "converter":
                msgs = [m.to_dict() for m in convs[name].to_messages(r.text)]
            else:
                w = world.wrap_turns(name, r.text, "", rng, subject=subject)
                msgs = [*w.messages, {"role": "user", "content": w.prompt}]
            text = render_conversation(msgs)
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
    cls = CLASSIFIERS.get(cfg.backend)  # an unknown name lists the registered ones
    if cfg.output_backend is not None:
        if cfg.output_backend not in CLASSIFIERS or not is_streaming(cfg.output_backend):
            raise ValueError(f"output backend {cfg.output_backend!r} is not a registered "
                             "streaming classifier; streaming backends: "
                             f"{', '.join(streaming_names())}")
    else:
        try:
            cfg.output_name()
        except KeyError:
            raise ValueError(
                f"backend {cfg.backend!r} has no streaming twin to classify replies with: "
                "pass an output backend (--output-backend NAME, or "
                f"TrainConfig.output_backend), one of: {', '.join(streaming_names())}"
            ) from None
    if getattr(cls, "needs_model_dir", False) and not (
            cfg.model_dir or "model_dir" in cfg.input_params):
        raise ValueError(f"backend {cfg.backend!r} reads a local model: give the model "
                         "directory (--model-dir DIR, alias --probe-model, or "
                         "TrainConfig.model_dir)")
    out_name = cfg.output_name()
    # A wrapper ('decoding') may hand model_dir on to a base named in input_params.
    if cfg.model_dir and "base" not in cfg.input_params and not any(
            _needs_model(n) for n in (cfg.backend, out_name)):
        raise ValueError(f"neither backend {cfg.backend!r} nor output backend {out_name!r} "
                         "reads a model: drop --model-dir (TrainConfig.model_dir)")
    out_cls = CLASSIFIERS.get(out_name)
    if cfg.output_context not in getattr(out_cls, "contexts", ("reply",)):
        raise ValueError(f"output backend {out_name!r} reads the reply alone; it cannot be an "
                         f"{cfg.output_context} classifier: choose --output-context reply or "
                         "an output backend that reads the conversation (ngram-stream, "
                         "transformer-stream, probe-stream)")
    # Building both classifiers is cheap (no model is loaded) and catches an option a
    # backend does not take, or a model directory that is not one, before data is made.
    input_params, output_params = backend_params(cfg, 0)
    for which, name, params in (("input", cfg.backend, input_params),
                                ("output", out_name, output_params)):
        try:
            get_classifier(name, **params)
        except (TypeError, ValueError, ClassifierError) as e:
            raise ValueError(f"{which} classifier {name!r}: {e}") from None


def _needs_model(name: str | None) -> bool:
    """Whether backend `name` takes a model directory: it reads a model, or it is a
    composite (cascade, ensemble) that hands the directory to members that do."""
    if not (name and name in CLASSIFIERS):
        return False
    cls = CLASSIFIERS.get(name)
    return bool(getattr(cls, "needs_model_dir", False) or getattr(cls, "composite", False))


def _output_name(cfg: TrainConfig) -> str | None:
    """The output backend's registered name, or None if the input backend has no twin."""
    try:
        return cfg.output_name()
    except KeyError:
        return None


def _reads_ngrams(cfg: TrainConfig) -> bool:
    """Whether the output classifier is the n-gram stream (or reads the reply back
    through 'decoding-stream' into one)."""
    name = _output_name(cfg)
    return name == "ngram-stream" or (name == "decoding-stream" and dict(
        cfg.output_params).get("base", "ngram-stream") == "ngram-stream")


def backend_params(cfg: TrainConfig, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constructor kwargs of the input and output classifiers.

    `cfg.model_dir` goes to the output classifier only if its backend reads a model
    (`needs_model_dir`), and to the input classifier if its backend does or the output's
    does not (a wrapper such as 'decoding' may pass it on to a base that reads one): a
    fine-tuned or probed input model pairs with an n-gram output, which takes no model.
    """
    in_extra: dict[str, Any] = {"seed": seed}
    out_extra: dict[str, Any] = {"seed": seed}
    if cfg.model_dir:
        out_name = _output_name(cfg)
        if _needs_model(out_name):
            out_extra["model_dir"] = str(cfg.model_dir)
        if _needs_model(cfg.backend) or not _needs_model(out_name):
            in_extra["model_dir"] = str(cfg.model_dir)
    if cfg.output_context == "exchange":
        # The exchange backends' own options (see each backend's config).
        out_extra["context"] = "exchange"
        if cfg.output_first_user and _reads_ngrams(cfg):
            out_extra["context_first_user"] = True
    if cfg.backend == DEFAULT_BACKEND and "base" not in cfg.input_params:
        in_extra |= DEFAULT_INPUT_PARAMS
    return {**in_extra, **dict(cfg.input_params)}, {**out_extra, **dict(cfg.output_params)}


def world_seed_of(manifest: Mapping[str, Any], default: int) -> int:
    """The seed of the world a dataset was drawn from, as its manifest records it."""
    backend = manifest.get("backend") or {}
    seed = backend.get("world_seed") if isinstance(backend, Mapping) else None
    return seed if isinstance(seed, int) else default


def check_data_constitution(data: Path, manifest: Mapping[str, Any],
                            constitution: Constitution, whose: str) -> None:
    """ValueError unless the dataset in `data` was generated from `constitution` (its
    labels are that constitution's); `whose` names the other side in the message."""
    rec = manifest.get("constitution")
    have = rec.get("content_hash") if isinstance(rec, Mapping) else None
    if have != constitution.content_hash():
        name = rec.get("name") if isinstance(rec, Mapping) else None
        raise ValueError(f"{data} was generated from constitution {name!r} (hash "
                         f"{str(have)[:12]}), not from {whose} {constitution.name!r} "
                         f"({constitution.content_hash()[:12]}); its labels would not match")


def merged_heldout(manifest: Mapping[str, Any], extra: Sequence[str]) -> list[str]:
    """The data's own held-out families, then `extra` ones, without repeats."""
    return list(dict.fromkeys([*(manifest.get("heldout_converters") or []), *extra]))


@dataclass
class _Data:
    """The dataset a bundle trains on, read or generated."""

    dir: Path
    manifest: dict[str, Any]
    splits: dict[str, list[Record]]
    world: World
    converters: list[str]
    heldout: list[str]


def _generate(out_dir: Path, const: Constitution, cfg: TrainConfig,
              heldout: Sequence[str] | None, seed: int, responder: ChatModel | None,
              progress: Progress | None, overwrite: bool) -> _Data:
    data = out_dir / DATA_DIR
    check_out_dir(data, overwrite)
    names, held = resolve_converters(None, DEFAULT_HELDOUT if heldout is None else heldout)
    world = World(seed=cfg.world_seed)
    manifest = generate_dataset(
        const, "world", data, n_per_category=cfg.n_per_category, converters=names,
        heldout_converters=held, seed=seed, responder=responder, world=world,
        progress=progress, overwrite=overwrite)
    return _Data(data, manifest, load_dataset(data), world, list(names), list(held))


def _read(data: Path, const: Constitution, cfg: TrainConfig, heldout: Sequence[str] | None,
          responder: ChatModel | None) -> _Data:
    if not (data / "manifest.json").is_file():
        raise ValueError(f"{data}: no manifest.json; is it a directory written by "
                         "`swisscheese data generate`?")
    manifest = read_manifest(data)
    check_data_constitution(data, manifest, const, "the constitution given,")
    extra = [h for h in (heldout or ()) if h not in manifest.get("heldout_converters", [])]
    _, extra = resolve_converters([], extra)
    held = merged_heldout(manifest, extra)
    splits = load_dataset(data)
    if responder is not None:
        # The test split keeps its own responses: evaluation regenerates what it needs.
        splits = {s: respond(rs, responder) if s != "test" else rs for s, rs in splits.items()}
    world = World(seed=world_seed_of(manifest, cfg.world_seed))
    return _Data(data, manifest, splits, world, list(manifest.get("converters", [])), held)


def _validation(bundle: GuardBundle, val: Sequence[Record]) -> dict[str, Any]:
    """Input TPR and FPR on the val split (its harmful prompts were not calibrated on)."""
    scores = bundle.input_scores(prompt_texts(val))
    y = np.array([r.label for r in val])
    out: dict[str, Any] = {"n": len(val)}
    if (y == 1).any():
        out["input_tpr"] = tpr_at_threshold(y, scores, bundle.thresholds["input"])
    out["input_fpr"] = fpr_at_threshold(y, scores, bundle.thresholds["input"])
    return out


def _record(d: _Data, cfg: TrainConfig, seed: int, bundle_dir: Path,
            responder: ChatModel | None) -> TrainingRecord:
    data_abs = d.dir.resolve()
    return TrainingRecord(
        recipe="organism", seed=seed, heldout_families=tuple(d.heldout),
        config={k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(cfg).items()},
        data={
            "dir": str(data_abs),
            # Relative to the bundle, so moving the whole run directory keeps the link.
            "dir_from_bundle": os.path.relpath(data_abs, bundle_dir.resolve()),
            "world_seed": d.world.seed,
            "responder": d.manifest.get("responder") if responder is None
            else getattr(responder, "name", str(responder)),
            "counts": {s: len(rs) for s, rs in d.splits.items()},
        })


def train_bundle(
    out: str | os.PathLike[str],
    constitution: Constitution | str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    heldout: Sequence[str] | None = None,
    target_fpr: float = 0.005,
    responder: ChatModel | None = None,
    seed: int = 0,
    progress: Progress | None = None,
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
    cfg = config or TrainConfig()
    check_backend(cfg)
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    const = resolve_constitution(constitution)
    bundle_dir = Path(out) / BUNDLE_DIR
    refuse_nonempty_dir(bundle_dir, "pass --force to replace it", overwrite=overwrite,
                        error=BundleError)
    d = (_generate(Path(out), const, cfg, heldout, seed, responder, progress, overwrite)
         if data_dir is None else _read(Path(data_dir), const, cfg, heldout, responder))
    bundle = _fit(d, const, cfg, target_fpr, seed, progress)
    bundle.training = _record(d, cfg, seed, bundle_dir, responder)
    step(progress, "save", 0, 1)
    save_bundle(bundle, bundle_dir, overwrite=overwrite)
    step(progress, "save", 1, 1)
    return bundle_dir


def without_test_leaks(records: Sequence[Record], world: World, manifest: Mapping[str, Any]
                       ) -> tuple[list[Record], int]:
    """`records` less those whose model-written response releases a test hazard's
    procedure (>= `HARMFUL_SHARE` of its key details), and how many were left out.

    A responder asked about a training hazard sometimes writes a test hazard's procedure
    instead (58 of 3,989 train records of the stop 25 data): kept, they taught the output
    classifier the test hazards' reagents, and every "held-out hazard" figure read them."""
    test = [world.hazard(i) for i in (manifest.get("hazards") or {}).get("test") or []]
    if not test:
        return list(records), 0
    content = ReplyContent(test)
    keep = [r for r in records
            if not r.response or content.release(r.response)[1] < HARMFUL_SHARE]
    return keep, len(records) - len(keep)


def output_training(world: World, const: Constitution, train: Sequence[Record],
                    val_benign: Sequence[Record], manifest: Mapping[str, Any], seed: int,
                    open_crafts: int
                    ) -> tuple[OutputPairs, list[list[dict[str, str]]], list[str], int]:
    """The output classifier's training pairs (test-hazard leaks left out), its benign
    calibration conversations and replies, and the number of leaks left out."""
    out_train, leaks = without_test_leaks(train, world, manifest)
    pairs = output_pairs(world, const, out_train, seed, open_crafts=open_crafts)
    cal_convs, cal_out = harmless_pairs(world, const, val_benign, seed + 1)
    if open_crafts:
        # Harmless crafts no split holds, so that the threshold also clears procedures
        # whose reagents the classifier never saw (the train split's are in `pairs`).
        craft_convs, craft_out = open_craft_pairs(world, "calibration", seed + 1)
        cal_convs, cal_out = cal_convs + craft_convs, cal_out + craft_out
    return pairs, cal_convs, cal_out, leaks


def _fit(d: _Data, const: Constitution, cfg: TrainConfig, target_fpr: float, seed: int,
         progress: Progress | None) -> GuardBundle:
    """Both classifiers fitted and calibrated on the dataset, with validation figures."""
    train = [r for r in d.splits["train"] if r.family not in set(d.heldout)]
    # The input classifier also skips the families held out of it alone.
    input_train = [r for r in train if r.family not in set(cfg.input_heldout)]
    val = d.splits["val"]
    if len({r.label for r in input_train}) < 2:
        raise ValueError(f"{d.dir}: the train split needs harmful and harmless records")
    val_benign = [r for r in val if r.label == 0]
    if not val_benign:
        raise ValueError(f"{d.dir}: the val split has no harmless records to calibrate on")
    step(progress, "augment", 0, 1)
    in_x, in_y = input_training(input_train, d.world, d.converters,
                                [*d.heldout, *cfg.input_heldout], cfg.augment, seed,
                                cfg.input_crafts())
    step(progress, "augment", 1, 1)
    step(progress, "replies", 0, 1)
    pairs, cal_convs, cal_out, leaks = output_training(d.world, const, train, val_benign,
                                                       d.manifest, seed,
                                                       cfg.output_open_crafts)
    if len(set(pairs.labels)) < 2:
        raise ValueError(f"{d.dir}: no harmful and harmless replies to train the output "
                         "classifier on (records need a world link or a response)")
    if not cal_out:
        raise ValueError(f"{d.dir}: no harmless replies in the val split to calibrate on")
    step(progress, "replies", 1, 1)
    input_params, output_params = backend_params(cfg, seed)
    bundle = build_bundle(
        const, in_x, in_y,
        prompt_texts(val_benign), pairs.texts, pairs.labels, cal_out,
        target_fpr=target_fpr, backend=cfg.backend, output_backend=cfg.output_name(),
        input_params=input_params, output_params=output_params, version=1,
        notes=f"recipe organism: world seed {d.world.seed}, data {d.dir}",
        stream_chunk_chars=cfg.stream_chunk_chars,
        output_train_conversations=pairs.conversations, benign_output_conversations=cal_convs,
        progress=progress)
    bundle.metrics["input"]["augmented_n"] = len(in_x) - len(input_train)
    bundle.metrics["input"]["heldout_of_input"] = list(cfg.input_heldout)
    bundle.metrics["output"]["test_leaks_dropped"] = leaks
    bundle.metrics["validation"] = _validation(bundle, val)
    return bundle
