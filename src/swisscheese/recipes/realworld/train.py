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
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swisscheese.bundles import BundleError, TrainingRecord, build_bundle, save_bundle
from swisscheese.classifiers.base import render_conversation
from swisscheese.constitution import Constitution
from swisscheese.constitution.schema import Category
from swisscheese.progress import Progress, step
from swisscheese.recipes.realworld.data import RealWorldData, check_datasets_dir, load_realworld

BUNDLE_DIR = "bundle"
# Disguises held out of training by default: one per converter family, as for the organism.
DEFAULT_HELDOUT = ("morse", "homoglyphs", "codeword")
# Converters that change the conversation (multiturn) or need a model (translation) are
# left out: the first renders as role-prefixed turns, the second would be the world's Velsh.
_SKIP_CONVERTERS = frozenset({"translation"})
SLOT = "[INSERT PROMPT HERE]"
CLEAN_EMAIL_WEIGHT = 4
OUTPUT_TRAINED_ON = ("AdvBench target openings vs Alpaca instructions, their openings built "
                     "the same way, and BIPIA answers; no model replies")


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
    from swisscheese.recipes.realworld.evaluate import evaluate_realworld

    cfg = config or RealWorldConfig()
    held = list(DEFAULT_HELDOUT if heldout is None else heldout)
    augment_converters(held)  # unknown names fail before any work
    bundle_dir = Path(out) / BUNDLE_DIR
    if bundle_dir.is_dir() and any(bundle_dir.iterdir()) and not overwrite:
        raise BundleError(f"{bundle_dir}: directory is not empty; pass --force to replace it")
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
