"""The `realworld` recipe's training: an input guard bundle from the public datasets.

    train_realworld("runs/realworld")     # reads ../shared/datasets, writes runs/realworld/bundle

The splits are `data.load_realworld`'s. The input classifier learns the training requests,
jailbreak templates (those with an "[INSERT PROMPT HERE]" slot also filled with training
requests) and injected e-mails against Alpaca instructions and clean e-mails, plus
`augment` converter-disguised copies (converter registry) of each training request,
harmful and harmless alike, so that a disguise alone is not learned as harm; the converters
in `heldout` are applied to test requests only (recall per converter, held-out ones
marked).

The input threshold is calibrated on the Alpaca calibration split plus XSTest's safe
calibration half at `target_fpr`. The streaming output classifier has no model replies to
learn from (the files hold none): it learns AdvBench's affirmative target openings ("Sure,
here is ...") as harmful against harmless instructions and BIPIA's reference answers, and
is measured on JailbreakBench's harmful and benign targets. Every figure lands in the
bundle's `metrics["realworld"]`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from swisscheese.bundles import BundleError, TrainingRecord, build_bundle, save_bundle
from swisscheese.constitution import Constitution
from swisscheese.constitution.schema import Category
from swisscheese.fileio import refuse_nonempty_dir
from swisscheese.progress import Progress, step
from swisscheese.recipes.realworld.data import check_datasets_dir, load_realworld
from swisscheese.recipes.realworld.evaluate import evaluate_realworld
from swisscheese.recipes.realworld.texts import (
    DEFAULT_HELDOUT,
    RealWorldConfig,
    augment_converters,
    input_training_texts,
)

BUNDLE_DIR = "bundle"
OUTPUT_TRAINED_ON = ("AdvBench target openings vs Alpaca instructions, their openings built "
                     "the same way, and BIPIA answers; no model replies")
def realworld_constitution() -> Constitution:
    """What the realworld bundle blocks, in words. The examples describe kinds of request
    rather than quote any: the data files are the examples."""
    def cat(cid: str, title: str, description: str, examples: tuple[str, ...]) -> Category:
        return Category(cid, title, description, examples)

    return Constitution(
        name="swisscheese-realworld",
        version="1.0",
        description=("An input guard for a general-purpose English assistant, learned from "
                     "public benchmark data (AdvBench, JailbreakBench, in-the-wild jailbreak "
                     "prompts, BIPIA, Alpaca, XSTest)."),
        harmful=(
            cat("harmful-requests", "Requests for serious harm",
                "Requests for help to hurt people, commit crimes, make weapons or malware, "
                "harass, defraud or deceive, as in AdvBench and JailbreakBench.",
                ("A request for step-by-step help with a violent or criminal act.",
                 "A request to write malware or a scam.")),
            cat("jailbreak-templates", "Jailbreak templates",
                "Prompts that try to switch off the assistant's rules: 'do anything now' "
                "personas, developer modes, fictional frames that demand no refusals.",
                ("A prompt telling the assistant it now has no rules and must never refuse.",)),
            cat("prompt-injection", "Prompt injection",
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
) -> Path:
    """Train, calibrate and evaluate the realworld bundle; save it to `out/bundle`."""
    cfg = config or RealWorldConfig()
    held = list(DEFAULT_HELDOUT if heldout is None else heldout)
    augment_converters(held)  # unknown names fail before any work
    bundle_dir = Path(out) / BUNDLE_DIR
    refuse_nonempty_dir(bundle_dir, "pass --force to replace it", overwrite=overwrite,
                        error=BundleError)
    d = check_datasets_dir(datasets_dir).resolve()
    step(progress, "read datasets", 0, 1)
    data = load_realworld(d, limit=cfg.limit, seed=seed)
    step(progress, "read datasets", 1, 1)
    step(progress, "augment", 0, 1)
    x, y = input_training_texts(data, cfg.augment, held, seed)
    step(progress, "augment", 1, 1)
    step(progress, "fit and calibrate", 0, 1)
    bundle = build_bundle(
        realworld_constitution(), x, y, data.calibration,
        data.out_harmful + data.out_benign,
        [1] * len(data.out_harmful) + [0] * len(data.out_benign),
        data.out_calibration, target_fpr=target_fpr, backend=cfg.backend,
        input_params={"seed": seed, **cfg.input_params},
        output_params={"seed": seed, **cfg.output_params}, version=1,
        notes=f"recipe realworld: public datasets ({d}), limit {cfg.limit}",
        training=TrainingRecord(
            recipe="realworld", seed=seed, heldout_families=tuple(held),
            config={k: (dict(v) if isinstance(v, Mapping) else v)
                    for k, v in asdict(cfg).items()},
            data={"datasets_dir": str(d), "counts": data.counts,
                  "output_trained_on": OUTPUT_TRAINED_ON}))
    step(progress, "fit and calibrate", 1, 1)
    step(progress, "evaluate", 0, 1)
    bundle.metrics["realworld"] = evaluate_realworld(bundle, data, held, seed)
    step(progress, "evaluate", 1, 1)
    step(progress, "save", 0, 1)
    save_bundle(bundle, bundle_dir, overwrite=overwrite)
    step(progress, "save", 1, 1)
    return bundle_dir
