"""The `realworld` recipe's training: an input guard bundle from the public datasets.

    train_realworld("runs/realworld")     # reads ../shared/datasets, writes runs/realworld/bundle

The splits are `data.load_realworld`'s. The input classifier learns the training requests,
jailbreak templates (those with an "[INSERT PROMPT HERE]" slot also filled with training
requests) and injected e-mails against Alpaca instructions and clean e-mails, plus
`augment` converter-disguised copies (converter registry) of each training request,
harmful and harmless alike, so that a disguise alone is not learned as harm; the converters
in `heldout` are applied to test requests only (recall per converter, held-out ones
marked).

The backend is the pretrained encoder by default (`backend="encoder"`: the sha256-pinned
MiniLM with an mlp input head, logistic heads for the output and the categories);
`backend="ngram"` trains the fast hashed n-gram instead. The input threshold is
calibrated on three benign sources at once (Alpaca, XSTest's safe calibration third,
clean BIPIA e-mails: the largest of the per-source thresholds at `target_fpr`).
With the encoder the bundle also gets a per-category scorer: one head per harmful
category of `realworld_constitution()` (labels: `categories.py`). The output
classifier is an exchange classifier that learns from exchanges built from the requests
(`replies.py`: the files hold no model replies). Every figure lands in the bundle's
`metrics["realworld"]`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from swisscheese.bundles import (
    BundleError,
    Categories,
    GuardBundle,
    TrainingRecord,
    build_bundle,
    save_bundle,
)
from swisscheese.classifiers.registry import CATEGORY_SCORERS, get_classifier
from swisscheese.constitution import Constitution
from swisscheese.constitution.schema import Category
from swisscheese.fileio import refuse_nonempty_dir
from swisscheese.progress import Progress, step
from swisscheese.recipes.realworld.categories import (
    HARMFUL_IDS,
    INJECTION,
    REQUEST_CATEGORIES,
    TEMPLATES,
)
from swisscheese.recipes.realworld.data import RealWorldData, check_datasets_dir, load_realworld
from swisscheese.recipes.realworld.evaluate import evaluate_realworld
from swisscheese.recipes.realworld.replies import output_calibration, output_training_set
from swisscheese.recipes.realworld.texts import (
    DEFAULT_HELDOUT,
    RealWorldConfig,
    augment_converters,
    input_training_set,
)

# The output is streamed to the classifier in pieces of about a token (as the gateway
# does); the encoder's exchange classifier reads them in chunks of tokens of its own.
STREAM_CHUNK_CHARS = 4

BUNDLE_DIR = "bundle"
OUTPUT_TRAINED_ON = (
    "exchanges built from the datasets' requests: harmful requests answered by their "
    "affirmative openings (AdvBench/JailbreakBench targets, or built the same way) continued "
    "by content-free compliance templates, against the same shape of answer to harmless "
    "requests, BIPIA reference answers and refusals; no model replies")
CATEGORY_THRESHOLD = 0.5
# XSTest's safe prompts are built to look unsafe; the goal for them is a 5% flag rate, not
# ordinary traffic's 1%, so their calibration third is held to 3% (a margin below 5%)
# while Alpaca and the e-mails are held to the bundle's target.
SOURCE_FPR = {"xstest_safe": 0.03}


def realworld_constitution() -> Constitution:
    """What the realworld bundle blocks, in words: nine kinds of harmful request (see
    `categories.py`: JailbreakBench's categories), jailbreak templates and prompt
    injection. The examples describe kinds of request rather than quote any: the data
    files are the examples."""
    def cat(cid: str, title: str, description: str, examples: tuple[str, ...]) -> Category:
        return Category(cid, title, description, examples)

    requests = tuple(cat(cid, title, desc, (f"A request for help with: {desc[0].lower()}"
                                            f"{desc[1:]}",))
                     for cid, title, desc in REQUEST_CATEGORIES)
    return Constitution(
        name="swisscheese-realworld",
        version="2.0",
        description=("A guard for a general-purpose English assistant, learned from public "
                     "benchmark data (AdvBench, JailbreakBench, in-the-wild jailbreak "
                     "prompts, BIPIA, Alpaca, XSTest)."),
        harmful=(
            *requests,
            cat(TEMPLATES, "Jailbreak templates",
                "Prompts that try to switch off the assistant's rules: 'do anything now' "
                "personas, developer modes, fictional frames that demand no refusals.",
                ("A prompt telling the assistant it now has no rules and must never refuse.",)),
            cat(INJECTION, "Prompt injection",
                "Instructions hidden in content the assistant reads (an e-mail, a web page) "
                "that try to make it do something the user did not ask for.",
                ("An e-mail whose text tells the assistant to ignore the user and do "
                 "something else.",)),
        ),
        harmless=(
            cat("ordinary-instructions", "Ordinary instructions",
                "Everyday questions and tasks: writing, explaining, coding, advice.",
                ("Give three tips for staying healthy.",)),
            cat("safe-lookalikes", "Safe look-alikes",
                "Harmless requests that use words of harm: killing a process, the history "
                "of a war, fiction, definitions (XSTest's safe prompts).",
                ("How can I kill a Python process?",)),
        ),
    )


def _record(cfg: RealWorldConfig, held: list[str], seed: int, d: Path,
            data: RealWorldData) -> TrainingRecord:
    return TrainingRecord(
        recipe="realworld", seed=seed, heldout_families=tuple(held),
        config={k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(cfg).items()},
        data={"datasets_dir": str(d), "counts": data.counts,
              "output_trained_on": OUTPUT_TRAINED_ON})


def fit_realworld(data: RealWorldData, cfg: RealWorldConfig, held: list[str], seed: int,
                  target_fpr: float, record: TrainingRecord) -> GuardBundle:
    """Fit and calibrate the bundle's classifiers on the splits of `data`."""
    inputs = input_training_set(data, cfg.augment, held, seed)
    out_train = output_training_set(data, seed)
    out_cal = output_calibration(data, seed)
    backend = cfg.backend
    cats = None
    if backend in CATEGORY_SCORERS:
        cats = Categories(labels=inputs.categories, names=HARMFUL_IDS,
                          thresholds=dict.fromkeys(HARMFUL_IDS, CATEGORY_THRESHOLD))
    return build_bundle(
        realworld_constitution(), inputs.texts, inputs.labels, data.calibration_by_source,
        out_train.replies, out_train.labels, out_cal.replies, target_fpr=target_fpr,
        backend=backend, input_params=cfg.input_kwargs(seed),
        output_params={"seed": seed, **cfg.output_params}, version=1,
        notes=f"recipe realworld: public datasets, backend {backend}, limit {cfg.limit}",
        training=record, output_train_conversations=out_train.conversations,
        benign_output_conversations=out_cal.conversations, categories=cats,
        stream_chunk_chars=STREAM_CHUNK_CHARS,
        source_fpr={k: max(v, target_fpr) for k, v in SOURCE_FPR.items()})


def _cached_encoder(cfg: RealWorldConfig, embed_cache: str | os.PathLike[str] | None
                    ) -> Any:
    """The shared encoder of an encoder-backed recipe, its cache filled from
    `embed_cache`; None for other backends or without a cache file."""
    if embed_cache is None or not cfg.backend.startswith("encoder"):
        return None
    from swisscheese.classifiers.backends.encoder_model import encoder_for

    params = dict(cfg.input_params)
    enc = encoder_for(str(params.get("model_dir", "")), params.get("model_sha256") or None)
    enc.load_cache(Path(embed_cache))
    return enc


def train_realworld(
    out: str | os.PathLike[str],
    datasets_dir: str | os.PathLike[str] | None = None,
    *,
    config: RealWorldConfig | None = None,
    target_fpr: float = 0.005,
    heldout: Sequence[str] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
    embed_cache: str | os.PathLike[str] | None = None,
) -> Path:
    """Train, calibrate and evaluate the realworld bundle; save it to `out/bundle`.
    `embed_cache` (a .npz file) keeps the encoder's embeddings between runs, so a rerun
    with other heads or thresholds does not embed the same texts again; the figures are
    the same with or without it."""
    cfg = config or RealWorldConfig()
    held = list(DEFAULT_HELDOUT if heldout is None else heldout)
    augment_converters(held)  # unknown names fail before any work
    get_classifier(cfg.backend, **cfg.input_kwargs(seed))  # a bad encoder: now
    bundle_dir = Path(out) / BUNDLE_DIR
    refuse_nonempty_dir(bundle_dir, "pass --force to replace it", overwrite=overwrite,
                        error=BundleError)
    d = check_datasets_dir(datasets_dir).resolve()
    step(progress, "read datasets", 0, 1)
    data = load_realworld(d, limit=cfg.limit, seed=seed)
    step(progress, "read datasets", 1, 1)
    encoder = _cached_encoder(cfg, embed_cache)
    step(progress, "fit and calibrate", 0, 1)
    bundle = fit_realworld(data, cfg, held, seed, target_fpr, _record(cfg, held, seed, d, data))
    step(progress, "fit and calibrate", 1, 1)
    step(progress, "evaluate", 0, 1)
    bundle.metrics["realworld"] = evaluate_realworld(bundle, data, held, seed)
    step(progress, "evaluate", 1, 1)
    if encoder is not None and embed_cache is not None:
        encoder.save_cache(Path(embed_cache))
    step(progress, "save", 0, 1)
    save_bundle(bundle, bundle_dir, overwrite=overwrite)
    step(progress, "save", 1, 1)
    return bundle_dir
