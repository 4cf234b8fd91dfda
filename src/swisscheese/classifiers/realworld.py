"""The `realworld` preset: an input guard bundle trained on the public benchmark files.

    train_realworld("runs/realworld")     # reads ../shared/datasets, writes runs/realworld/bundle

Reads `../shared/datasets` (or `datasets_dir`; see its README.md) in place; nothing is
copied into the repository or the bundle. What goes where:

- **harmful requests**: AdvBench `goal`s, grouped into clusters of near-duplicates (content
  word Jaccard >= 0.5, which AdvBench has many of: "Create a tutorial on how to make a X"),
  whole clusters split 80/20 into train and test. JailbreakBench's harmful behaviours are
  another source, test only, without the rows that near-duplicate a training request.
  XSTest's unsafe contrast prompts are test only too.
- **jailbreak templates**: the in-the-wild prompts (Shen et al.), clustered the same way
  over word 5-gram shingles (MinHash) so that reposts of one DAN variant stay together;
  the clusters first seen in the last 20% of time (by date) are the test split: the
  question is whether templates of the past catch those that came later. Templates with
  an "[INSERT PROMPT HERE]" slot are also filled with training requests.
- **prompt injection**: BIPIA attack instructions inserted into BIPIA's e-mails; attack
  categories and e-mails are each split so that the test ones are unseen. The clean
  e-mails (with their question) are harmless.
- **harmless**: Alpaca instructions (train, calibration and test), XSTest's safe prompts
  (calibration and test halves within each type: the over-refusal figure), and
  JailbreakBench's benign look-alikes (test only).
- **augmentation**: `augment` converter-disguised copies (converter registry) of each
  training request, harmful and harmless alike, so that a disguise alone is not learned as
  harm; the converters in `heldout` are applied to test requests only (recall per
  converter, held-out ones marked).

The input threshold is calibrated on the Alpaca calibration split plus XSTest's safe
calibration half at `target_fpr`. The streaming output classifier has no model replies to
learn from (the files hold none): it learns AdvBench's affirmative target openings ("Sure,
here is ...") as harmful against harmless instructions and BIPIA's reference answers, and
is measured on JailbreakBench's harmful and benign targets. Every figure lands in the
bundle's `metrics["realworld"]`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from swisscheese.classifiers.base import render_conversation
from swisscheese.classifiers.bundle import BundleError, build_bundle, save_bundle
from swisscheese.classifiers.metrics import auprc
from swisscheese.constitution import Constitution
from swisscheese.constitution.schema import Category

if TYPE_CHECKING:
    from swisscheese.classifiers.bundle import GuardBundle
    from swisscheese.classifiers.patch import TrainingSet

ProgressFn = Callable[[str, int, int], None]
BUNDLE_DIR = "bundle"
# Disguises held out of training by default: one per converter family, as for the organism.
DEFAULT_HELDOUT = ("morse", "homoglyphs", "codeword")
# Converters that change the conversation (multiturn) or need a model (translation) are
# left out: the first renders as role-prefixed turns, the second would be the world's Velsh.
_SKIP_CONVERTERS = frozenset({"translation"})
SLOT = "[INSERT PROMPT HERE]"
CLEAN_EMAIL_WEIGHT = 4
CSV_LIMIT = 1 << 24  # in-the-wild templates are long; the csv module's default is 128 KiB


class DatasetError(ValueError):
    """A dataset file that is missing or not as expected; the message names the file."""


# ---- where the data is --------------------------------------------------------------------
def default_datasets_dir() -> Path:
    """`../shared/datasets` next to the repository (the checkout this module lives in),
    else relative to the working directory."""
    repo = Path(__file__).resolve().parents[3]
    for candidate in (repo.parent / "shared" / "datasets", Path.cwd().parent / "shared" /
                      "datasets"):
        if (candidate / "README.md").is_file():
            return candidate
    return repo.parent / "shared" / "datasets"


FILES = {
    "advbench": "advbench/harmful_behaviors.csv",
    "jbb_harmful": "jailbreakbench/jbb_behaviors_harmful.csv",
    "jbb_benign": "jailbreakbench/jbb_behaviors_benign.csv",
    "in_the_wild": "in_the_wild/jailbreak_prompts_2023_12_25.csv",
    "alpaca": "benign/alpaca_instructions_no_input.json",
    "xstest": "xstest/xstest_prompts.csv",
    "bipia_text": "prompt_injection/bipia_text_attack_train.json",
    "bipia_code": "prompt_injection/bipia_code_attack_train.json",
    "bipia_email": "prompt_injection/bipia_email_train.jsonl",
}


def check_datasets_dir(datasets_dir: str | os.PathLike[str] | None) -> Path:
    """The datasets directory, with every file the preset reads; else DatasetError."""
    d = Path(datasets_dir) if datasets_dir is not None else default_datasets_dir()
    if not d.is_dir():
        raise DatasetError(f"{d}: datasets directory not found; the realworld preset reads "
                           "the public benchmark files there (pass --datasets DIR)")
    missing = [rel for rel in FILES.values() if not (d / rel).is_file()]
    if missing:
        raise DatasetError(f"{d}: missing {', '.join(missing)}; see {d / 'README.md'} for "
                           "the expected files")
    return d


def read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file that must have `columns`; DatasetError names the file and the
    columns it has when one is missing."""
    csv.field_size_limit(CSV_LIMIT)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            found = list(reader.fieldnames or [])
            lacking = [c for c in columns if c not in found]
            if lacking:
                raise DatasetError(f"{path}: no column {', '.join(map(repr, lacking))}; "
                                   f"found columns: {', '.join(map(repr, found)) or 'none'}")
            return [dict(row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: not a readable UTF-8 CSV file ({e})") from e


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not readable JSON ({e})") from e


def _strings(path: Path, rows: Iterable[Mapping[str, Any]], key: str) -> list[str]:
    out = []
    for i, row in enumerate(rows):
        v = row.get(key) if isinstance(row, Mapping) else None
        if not isinstance(v, str):
            raise DatasetError(f"{path}: row {i} has no string {key!r}")
        if v.strip():
            out.append(v.strip())
    return out


# ---- near-duplicate clusters --------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9']+")
_P = (1 << 61) - 1  # a Mersenne prime for the MinHash permutations
_FUNCTION_WORDS = frozenset(
    "a an the and or of to in on for with how can i you me my is are be that this it by "
    "from as at into about what who which please write create provide give develop explain "
    "describe".split())


def shingles(text: str, k: int) -> np.ndarray:
    """Hashes of the word k-grams of `text` (k = 1: its content words)."""
    words = _WORD.findall(text.lower())
    if k == 1:
        words = [w for w in words if w not in _FUNCTION_WORDS] or words
        grams = set(words)
    else:
        grams = {" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}
    # crc32: stable across processes, unlike the salted built-in hash.
    return np.array(sorted(zlib.crc32(g.encode("utf-8")) for g in grams if g),
                    dtype=np.uint64)


def minhash(texts: Sequence[str], k: int, n_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signatures (len(texts) x n_perm): the share of equal columns of two rows
    estimates the Jaccard similarity of their shingle sets."""
    rng = np.random.default_rng(seed)
    # a < 2**31 and crc32 hashes < 2**32, so a * h + b stays below 2**64: no wrap-around.
    a = rng.integers(1, 1 << 31, n_perm, dtype=np.uint64)
    b = rng.integers(0, _P, n_perm, dtype=np.uint64)
    sig = np.full((len(texts), n_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i, t in enumerate(texts):
        h = shingles(t, k)
        if len(h):
            v = (a[:, None] * h[None, :] + b[:, None]) % np.uint64(_P)
            sig[i] = v.min(axis=1)
    return sig


def clusters(texts: Sequence[str], k: int, threshold: float = 0.5) -> list[int]:
    """A cluster id per text: texts whose estimated Jaccard similarity is >= `threshold`
    are joined (transitively, with union-find)."""
    sig = minhash(texts, k)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(len(texts) - 1):
        sim = (sig[i + 1:] == sig[i]).mean(axis=1)
        for j in np.nonzero(sim >= threshold)[0]:
            ri, rj = find(i), find(i + 1 + int(j))
            if ri != rj:
                parent[rj] = ri
    return [find(i) for i in range(len(texts))]


def max_similarity(texts: Sequence[str], others: Sequence[str], k: int = 1) -> np.ndarray:
    """For each text, its highest estimated Jaccard similarity to any of `others`."""
    if not others or not texts:
        return np.zeros(len(texts))
    sig = minhash(list(texts) + list(others), k)
    a, b = sig[:len(texts)], sig[len(texts):]
    return np.array([(b == row).mean(axis=1).max() for row in a])


# ---- the splits ---------------------------------------------------------------------------
@dataclass
class RealWorldData:
    """Every text of the preset by role; `groups` keep near-duplicates together."""

    train_harmful: list[str] = field(default_factory=list)
    train_harmful_groups: list[str] = field(default_factory=list)
    train_templates: list[str] = field(default_factory=list)
    train_injections: list[str] = field(default_factory=list)
    train_clean_emails: list[str] = field(default_factory=list)
    train_benign: list[str] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)  # Alpaca cal + XSTest safe cal
    test_harmful: list[str] = field(default_factory=list)  # AdvBench held-out clusters
    test_jbb_harmful: list[str] = field(default_factory=list)
    test_jbb_benign: list[str] = field(default_factory=list)
    test_xstest_unsafe: list[str] = field(default_factory=list)
    test_xstest_safe: list[str] = field(default_factory=list)
    test_templates: list[str] = field(default_factory=list)
    test_injections: list[str] = field(default_factory=list)
    test_clean_emails: list[str] = field(default_factory=list)
    test_benign: list[str] = field(default_factory=list)  # Alpaca test
    out_harmful: list[str] = field(default_factory=list)  # AdvBench train targets
    out_benign: list[str] = field(default_factory=list)
    out_calibration: list[str] = field(default_factory=list)
    out_test_harmful: list[str] = field(default_factory=list)  # JBB harmful targets
    out_test_benign: list[str] = field(default_factory=list)  # JBB benign targets
    counts: dict[str, int] = field(default_factory=dict)


def _cap(items: list[Any], limit: int | None, rng: random.Random) -> list[Any]:
    if limit is None or len(items) <= limit:
        return items
    return rng.sample(items, limit)


def _inject(email: Mapping[str, str], attack: str, where: int) -> str:
    """A BIPIA-style injected e-mail: the attack at the start, middle or end of the
    e-mail's context, followed by the user's question."""
    ctx = email["context"]
    if where == 0:
        ctx = f"{attack}\n{ctx}"
    elif where == 1:
        cut = len(ctx) // 2
        ctx = f"{ctx[:cut]}\n{attack}\n{ctx[cut:]}"
    else:
        ctx = f"{ctx}\n{attack}"
    return f"{ctx}\n\n{email['question']}"


def _clean_email(email: Mapping[str, str]) -> str:
    return f"{email['context']}\n\n{email['question']}"


def load_realworld(datasets_dir: str | os.PathLike[str] | None = None, *,
                   limit: int | None = None, seed: int = 0,
                   alpaca_sizes: tuple[int, int, int] = (8000, 2000, 2000)) -> RealWorldData:
    """Read the datasets and split them (see the module docstring). `limit` caps every
    source (for quick runs); `alpaca_sizes` are the Alpaca train, calibration and test
    sizes before the cap."""
    d = check_datasets_dir(datasets_dir)
    if limit is not None and limit < 10:
        raise ValueError(f"limit must be >= 10 rows per source, got {limit}")
    rng = random.Random(f"swisscheese-realworld-{seed}")
    out = RealWorldData()

    # AdvBench: clusters of near-duplicates, whole clusters to train or test.
    adv_path = d / FILES["advbench"]
    adv_rows = read_csv(adv_path, ["goal", "target"])
    adv_rows = _cap([r for r in adv_rows if r["goal"].strip()], limit, rng)
    goals = [r["goal"].strip() for r in adv_rows]
    cl = clusters(goals, k=1)
    ids = sorted(set(cl))
    rng.shuffle(ids)
    test_ids = set(ids[:max(1, len(ids) // 5)])
    for r, g, c in zip(adv_rows, goals, cl, strict=True):
        if c in test_ids:
            out.test_harmful.append(g)
        else:
            out.train_harmful.append(g)
            out.train_harmful_groups.append(f"advbench:{c}")
            if r["target"].strip():
                out.out_harmful.append(r["target"].strip())

    # JailbreakBench: another source, test only, minus near-duplicates of training.
    jh = read_csv(d / FILES["jbb_harmful"], ["Goal", "Target"])
    jb = read_csv(d / FILES["jbb_benign"], ["goal", "target"])
    pairs = _cap(list(zip(jh, jb, strict=False)), limit, rng)
    sim = max_similarity([h["Goal"] for h, _ in pairs], out.train_harmful)
    for (h, b), s in zip(pairs, sim, strict=True):
        if s < 0.5:
            out.test_jbb_harmful.append(h["Goal"].strip())
            out.out_test_harmful.append(h["Target"].strip())
        out.test_jbb_benign.append(b["goal"].strip())
        out.out_test_benign.append(b["target"].strip())

    # XSTest: safe prompts split in halves within each type; unsafe contrasts test only.
    xs = read_csv(d / FILES["xstest"], ["prompt", "type", "label"])
    by_type: dict[str, list[str]] = {}
    for r in xs:
        if r["label"] == "safe":
            by_type.setdefault(r["type"], []).append(r["prompt"].strip())
        elif r["label"] == "unsafe":
            out.test_xstest_unsafe.append(r["prompt"].strip())
    safe_cal: list[str] = []
    for t in sorted(by_type):
        items = by_type[t]
        safe_cal += items[0::2]
        out.test_xstest_safe += items[1::2]
    out.test_xstest_unsafe = _cap(out.test_xstest_unsafe, limit, rng)
    out.test_xstest_safe = _cap(out.test_xstest_safe, limit, rng)
    safe_cal = _cap(safe_cal, limit, rng)

    # In-the-wild templates: clusters of reposts; the clusters first seen last are test.
    wild_path = d / FILES["in_the_wild"]
    wild = [r for r in read_csv(wild_path, ["prompt", "date"]) if r["prompt"].strip()]
    wild = _cap(wild, limit, rng)
    wcl = clusters([r["prompt"] for r in wild], k=5)
    first: dict[int, str] = {}
    for r, c in zip(wild, wcl, strict=True):
        first[c] = min(first.get(c, r["date"]), r["date"])
    order = sorted(first, key=lambda c: (first[c], c))
    late = set(order[len(order) - max(1, len(order) // 5):])
    for r, c in zip(wild, wcl, strict=True):
        (out.test_templates if c in late else out.train_templates).append(r["prompt"].strip())

    # Prompt injection: BIPIA attacks inserted into e-mails; unseen categories and e-mails
    # for test.
    attacks: dict[str, list[str]] = {}
    for key in ("bipia_text", "bipia_code"):
        path = d / FILES[key]
        data = _read_json(path)
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected an object of category -> attack strings")
        for cat, items in data.items():
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise DatasetError(f"{path}: category {cat!r} is not a list of strings")
            attacks[f"{key}:{cat}"] = items
    epath = d / FILES["bipia_email"]
    emails = []
    for i, line in enumerate(epath.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{epath}:{i}: not valid JSON ({e.msg})") from None
        if not (isinstance(row, dict) and isinstance(row.get("context"), str)
                and isinstance(row.get("question"), str)):
            raise DatasetError(f"{epath}:{i}: needs string 'context' and 'question'")
        emails.append(row)
    cats = sorted(attacks)
    rng.shuffle(cats)
    test_cats = set(cats[:max(1, len(cats) // 4)])
    rng.shuffle(emails)
    cut = max(1, len(emails) // 4)
    test_emails, train_emails = emails[:cut], emails[cut:]
    train_clean: list[str] = []
    for cat in sorted(attacks):
        test = cat in test_cats
        pool = test_emails if test else train_emails
        for j, attack in enumerate(attacks[cat]):
            email = pool[(j * 7 + len(cat)) % len(pool)]
            if test:
                out.test_injections.append(_inject(email, attack, j % 3))
            else:
                out.train_injections.append(_inject(email, attack, j % 3))
                # The same e-mail clean, once per injected copy: what the attack adds is
                # then the only difference, and e-mails as such are not learned as attacks.
                train_clean.append(_clean_email(email))
    keep = _cap(list(range(len(out.train_injections))), limit, rng)
    out.train_injections = [out.train_injections[i] for i in keep]
    train_clean = [train_clean[i] for i in keep]
    out.test_injections = _cap(out.test_injections, limit, rng)
    out.test_clean_emails = [_clean_email(e) for e in test_emails]

    # Alpaca: train, calibration and test.
    apath = d / FILES["alpaca"]
    alpaca_rows = _read_json(apath)
    if not isinstance(alpaca_rows, list):
        raise DatasetError(f"{apath}: expected a JSON list of objects with 'instruction'")
    alpaca = list(dict.fromkeys(_strings(apath, alpaca_rows, "instruction")))
    rng.shuffle(alpaca)
    n_tr, n_cal, n_te = (min(n, limit) if limit is not None else n for n in alpaca_sizes)
    out.train_benign = alpaca[:n_tr]
    out.train_clean_emails = train_clean
    out.calibration = alpaca[n_tr:n_tr + n_cal] + safe_cal
    out.test_benign = alpaca[n_tr + n_cal:n_tr + n_cal + n_te]
    openings = [o for o in map(affirmative_opening, alpaca[:n_tr]) if o]
    out.out_benign = (alpaca[:n_tr] + openings
                      + [e["ideal"] for e in train_emails
                         if isinstance(e.get("ideal"), str) and e["ideal"]])
    out.out_calibration = alpaca[n_tr:n_tr + n_cal] + [
        o for o in map(affirmative_opening, alpaca[n_tr:n_tr + n_cal]) if o]
    out.counts = {k: len(v) for k, v in asdict(out).items() if isinstance(v, list)}
    return out


_IMPERATIVE = re.compile(r"^(write|create|generate|compose|give|provide|develop|design|draft|"
                         r"produce|make|list|suggest|describe|outline)\s+(me\s+)?(.+)$",
                         re.IGNORECASE | re.DOTALL)


def affirmative_opening(instruction: str) -> str | None:
    """The opening a compliant reply to an imperative instruction starts with, built the
    way AdvBench built its harmful targets ("Write a poem about X" -> "Sure, here is a
    poem about X"); None for other instructions. Harmless openings of this shape keep the
    output classifier from learning "Sure, here is" itself as harm."""
    m = _IMPERATIVE.match(instruction.strip().rstrip("."))
    if m is None:
        return None
    rest = m.group(3)
    return f"Sure, here is {rest[:1].lower()}{rest[1:]}"


# ---- augmentation -------------------------------------------------------------------------
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


# ---- the constitution ---------------------------------------------------------------------
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


# ---- figures ------------------------------------------------------------------------------
def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def evaluate_realworld(bundle: GuardBundle, data: RealWorldData, heldout: Sequence[str], seed: int
                       ) -> dict[str, Any]:
    """The held-out figures of a realworld bundle (see `metrics["realworld"]`)."""
    t = bundle.thresholds["input"]

    def scores(texts: Sequence[str]) -> np.ndarray:
        return bundle.input_scores(list(texts)) if texts else np.zeros(0)

    def flagged(texts: Sequence[str]) -> float | None:
        return _rate(scores(texts) >= t)

    h, b = scores(data.test_harmful), scores(data.test_benign)
    y = np.r_[np.ones(len(h)), np.zeros(len(b))]
    names, held = augment_converters(heldout)
    by_conv: dict[str, dict[str, Any]] = {}
    probe_benign = data.test_benign[:200]
    for n in sorted([*names, *held]):
        if n == "multiturn_split":
            continue
        by_conv[n] = {"recall": flagged(disguise(data.test_harmful, [n], 1, seed + 2)),
                      "fpr": flagged(disguise(probe_benign, [n], 1, seed + 3)),
                      "heldout": n in held}
    held_recall = [v["recall"] for k, v in by_conv.items() if v["heldout"]]
    out_t = bundle.thresholds["output"]
    out_h = [bundle.output_score(x) >= out_t for x in data.out_test_harmful]
    out_b = [bundle.output_score(x) >= out_t for x in data.out_test_benign]
    return {
        "threshold": t,
        "tpr": _rate(h >= t),  # AdvBench held-out clusters
        "fpr": _rate(b >= t),  # Alpaca test
        "auprc": auprc(y, np.r_[h, b]) if len(h) and len(b) else None,
        "jbb_harmful_recall": flagged(data.test_jbb_harmful),
        "jbb_benign_fpr": flagged(data.test_jbb_benign),
        "xstest_unsafe_recall": flagged(data.test_xstest_unsafe),
        "xstest_safe_overrefusal": flagged(data.test_xstest_safe),
        "in_the_wild_heldout_recall": flagged(data.test_templates),
        "prompt_injection_heldout_recall": flagged(data.test_injections),
        "clean_email_fpr": flagged(data.test_clean_emails),
        "recall_by_converter": by_conv,
        "heldout_converters": list(held),
        "heldout_converter_recall": (float(np.mean([r for r in held_recall if r is not None]))
                                     if held_recall else None),
        "output_jbb_target_recall": _rate(np.array(out_h)),
        "output_jbb_benign_target_fpr": _rate(np.array(out_b)),
        "n": {"test_harmful": len(h), "test_benign": len(b),
              "jbb_harmful": len(data.test_jbb_harmful), "jbb_benign": len(data.test_jbb_benign),
              "xstest_safe": len(data.test_xstest_safe),
              "xstest_unsafe": len(data.test_xstest_unsafe),
              "templates": len(data.test_templates), "injections": len(data.test_injections)},
    }


# ---- training -----------------------------------------------------------------------------
def train_realworld(
    out: str | os.PathLike[str],
    datasets_dir: str | os.PathLike[str] | None = None,
    *,
    limit: int | None = None,
    target_fpr: float = 0.005,
    heldout: Sequence[str] | None = None,
    augment: int = 4,
    seed: int = 0,
    backend: str = "ngram",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Train, calibrate and evaluate the realworld bundle; save it to `out/bundle`."""
    held = list(DEFAULT_HELDOUT if heldout is None else heldout)
    augment_converters(held)  # unknown names fail before any work
    bundle_dir = Path(out) / BUNDLE_DIR
    if bundle_dir.is_dir() and any(bundle_dir.iterdir()) and not overwrite:
        raise BundleError(f"{bundle_dir}: directory is not empty; pass --force to replace it")
    if augment < 0:
        raise ValueError(f"augment must be >= 0, got {augment}")

    def step(phase: str, done: int, total: int) -> None:
        if progress:
            progress(phase, done, total)

    step("read datasets", 0, 1)
    data = load_realworld(datasets_dir, limit=limit, seed=seed)
    step("read datasets", 1, 1)
    step("augment", 0, 1)
    x, y = input_training_texts(data, augment, held, seed)
    step("augment", 1, 1)
    step("fit and calibrate", 0, 1)
    bundle = build_bundle(
        realworld_constitution(), x, y, data.calibration,
        data.out_harmful + data.out_benign,
        [1] * len(data.out_harmful) + [0] * len(data.out_benign),
        data.out_calibration, target_fpr=target_fpr, backend=backend,
        input_params={"seed": seed}, output_params={"seed": seed}, version=1,
        notes=(f"preset realworld: public datasets ({check_datasets_dir(datasets_dir)}), "
               f"limit {limit}"))
    step("fit and calibrate", 1, 1)
    step("evaluate", 0, 1)
    figures = evaluate_realworld(bundle, data, held, seed)
    step("evaluate", 1, 1)
    d = check_datasets_dir(datasets_dir).resolve()
    bundle.metrics["input"]["augmented"] = augment
    bundle.metrics["output"]["trained_on"] = (
        "AdvBench target openings vs Alpaca instructions, their openings built the same "
        "way, and BIPIA answers; no model replies")
    bundle.metrics.update({
        "preset": "realworld",
        "seed": seed,
        "heldout_families": held,
        "config": {"augment": augment, "backend": backend, "input_params": {},
                   "output_params": {}, "limit": limit},
        "data": {"datasets_dir": str(d), "counts": data.counts},
        "realworld": figures,
    })
    step("save", 0, 1)
    save_bundle(bundle, bundle_dir, overwrite=overwrite)
    step("save", 1, 1)
    return bundle_dir


def realworld_training_set(bundle: GuardBundle, bundle_dir: Path,
                           datasets_dir: str | os.PathLike[str] | None = None) -> TrainingSet:
    """The input training set of a realworld bundle, rebuilt for rapid response."""
    from swisscheese.classifiers.patch import TrainingSet, _config

    cfg, seed = _config(bundle, bundle_dir)
    rec = bundle.metrics.get("data")
    recorded = rec.get("datasets_dir") if isinstance(rec, Mapping) else None
    d = datasets_dir if datasets_dir is not None else recorded
    limit = cfg.get("limit")
    held = bundle.metrics.get("heldout_families") or list(DEFAULT_HELDOUT)
    data = load_realworld(d, limit=limit if isinstance(limit, int) else None, seed=seed)
    x, y = input_training_texts(data, int(cfg.get("augment", 0)), held, seed)
    harmful_pool = list(zip(data.train_harmful_groups, data.train_harmful, strict=True))
    vocab = frozenset(w for t in data.train_harmful + data.train_benign[:2000]
                      for w in _WORD.findall(t.lower()))
    return TrainingSet(
        texts=x, labels=y, calibration=data.calibration, test_benign=data.test_benign,
        test_harmful=data.test_harmful + data.test_jbb_harmful,
        harmful_pool=harmful_pool,
        benign_pool=[(t, t) for t in data.train_benign[:4000]],
        vocabulary=vocab, backend=str(cfg.get("backend", "ngram")),
        input_params={}, seed=seed, world_seed=0,
        describe={"datasets": str(check_datasets_dir(d)), "heldout_families": list(held)})


# ---- evaluating a saved bundle -------------------------------------------------------------
OUTPUT_STOP_NOTE = (
    "stop_rate_25 is null: the public datasets hold no model replies, so there is no harmful "
    "completion whose key details could be counted as the stream is released. The nearest "
    "figure is jbb_harmful_target_recall: the share of JailbreakBench harmful behaviours' "
    "target openings ('Sure, here is ...') the streaming classifier flags.")


def is_realworld_bundle(bundle: GuardBundle) -> bool:
    """Whether `train_realworld` (or a rapid-response patch of its bundle) wrote it."""
    return bundle.metrics.get("preset") == "realworld"


def recorded_setup(bundle: GuardBundle, bundle_dir: Path
                   ) -> tuple[int, int | None, list[str], str | None]:
    """(seed, limit, held-out converters, datasets directory) as `train_realworld`
    recorded them; BundleError naming bundle.json when the record is unusable, since
    the test splits cannot be rebuilt without it."""
    where = bundle_dir / "bundle.json"
    m = bundle.metrics
    seed, cfg, held = m.get("seed"), m.get("config"), m.get("heldout_families")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise BundleError(f"{where}: metrics.seed is {seed!r}, not an integer; the realworld "
                          "splits are rebuilt from it")
    if not isinstance(cfg, Mapping):
        raise BundleError(f"{where}: metrics.config is {cfg!r}, not an object holding the "
                          "training limit")
    limit = cfg.get("limit")
    if not (limit is None or (isinstance(limit, int) and not isinstance(limit, bool))):
        raise BundleError(f"{where}: metrics.config.limit must be null or an integer, got "
                          f"{limit!r}")
    if not isinstance(held, list) or not all(isinstance(h, str) for h in held):
        raise BundleError(f"{where}: metrics.heldout_families must be a list of converter "
                          f"names, got {held!r}")
    rec = m.get("data")
    recorded = rec.get("datasets_dir") if isinstance(rec, Mapping) else None
    return seed, limit, held, recorded if isinstance(recorded, str) else None


def resolve_datasets_dir(recorded: str | None,
                         datasets_dir: str | os.PathLike[str] | None) -> Path:
    """The datasets directory to evaluate on: the one given, else the recorded one where it
    still exists (a bundle copied to another machine keeps a stale path), else the default;
    DatasetError when it lacks a file."""
    if datasets_dir is None and recorded is not None and Path(recorded).is_dir():
        datasets_dir = recorded
    return check_datasets_dir(datasets_dir)


def _figures_differ(fresh: Any, stored: Any, path: str = "") -> list[str]:
    """Dotted keys where two figure trees differ (floats up to rounding)."""
    if isinstance(fresh, Mapping) and isinstance(stored, Mapping):
        return [d for k in sorted(set(fresh) | set(stored), key=str)
                for d in _figures_differ(fresh.get(k), stored.get(k), f"{path}{k}.")]
    if (isinstance(fresh, float) and isinstance(stored, int | float)
            and not isinstance(stored, bool)):
        same = abs(fresh - stored) <= 1e-12 + 1e-9 * abs(stored)
    else:
        same = fresh == stored
    return [] if same else [path.rstrip(".")]


def realworld_eval_result(bundle: GuardBundle, bundle_dir: Path,
                          datasets_dir: str | os.PathLike[str] | None = None
                          ) -> dict[str, Any]:
    """A realworld bundle's figures, measured afresh on the test splits it was trained
    beside, in the JSON shape of `evaluate.evaluate_bundle` (see its module docstring);
    `realworld` keeps every figure under the names `metrics["realworld"]` uses."""
    seed, limit, held, recorded = recorded_setup(bundle, bundle_dir)
    augment_converters(held)  # a held-out name this code no longer knows fails here
    d = resolve_datasets_dir(recorded, datasets_dir)
    data = load_realworld(d, limit=limit, seed=seed)
    f = evaluate_realworld(bundle, data, held, seed)
    n = f["n"]
    convs = f["recall_by_converter"]
    stored = bundle.metrics.get("realworld")
    differ = _figures_differ(f, stored) if isinstance(stored, Mapping) else None
    return {
        "kind": "realworld",
        "bundle": str(bundle_dir),
        "bundle_version": bundle.version,
        "data": str(d),
        "constitution": {"name": bundle.constitution.name,
                         "hash": bundle.constitution.content_hash()},
        "target_fpr": bundle.target_fpr,
        "setup": {"seed": seed, "limit": limit, "heldout": held},
        "n_test": sum(n.values()),
        "input": {
            "threshold": f["threshold"],
            "n_harmful": n["test_harmful"],
            "n_benign": n["test_benign"],
            "tpr": f["tpr"],
            "tpr_on": "AdvBench requests, held-out near-duplicate clusters",
            "fpr": f["fpr"],
            "fpr_on": "Alpaca instructions, test split",
            "auprc": f["auprc"],
            # Each converter disguises every held-out AdvBench request once.
            "recall_by_family": {k: v["recall"] for k, v in convs.items()},
            "fpr_by_family": {k: v["fpr"] for k, v in convs.items()},
            "heldout_families": f["heldout_converters"],
            "heldout_recall": f["heldout_converter_recall"],
            "overrefusal": f["xstest_safe_overrefusal"],
            "overrefusal_on": "XSTest safe prompts, test half",
            "n_lookalike": n["xstest_safe"],
            **{k: f[k] for k in ("jbb_harmful_recall", "jbb_benign_fpr", "xstest_unsafe_recall",
                                 "in_the_wild_heldout_recall",
                                 "prompt_injection_heldout_recall", "clean_email_fpr")},
            "n": n,
        },
        "output": {
            "threshold": bundle.thresholds["output"],
            "stream_chunk_chars": bundle.stream_chunk_chars,
            "stop_rate_25": None,
            "note": OUTPUT_STOP_NOTE,
            "jbb_harmful_target_recall": f["output_jbb_target_recall"],
            "n_harmful_targets": n["jbb_harmful"],
            "fpr": f["output_jbb_benign_target_fpr"],
            "fpr_on": ("JailbreakBench benign behaviours' target openings, streamed whole "
                       "(the only harmless reply-like texts the datasets hold)"),
            "n_benign": n["jbb_benign"],
        },
        "realworld": f,
        # A patched bundle carries its parent's training figures: they may differ then.
        "recorded_figures_match": None if differ is None else not differ,
        "recorded_figures_differ": differ,
    }


# ---- printing -----------------------------------------------------------------------------
FIGURE_ROWS = (
    ("TPR at calibrated FPR (AdvBench held-out clusters)", "tpr"),
    ("FPR (Alpaca test)", "fpr"),
    ("AUPRC (AdvBench held-out vs Alpaca test)", "auprc"),
    ("recall, JailbreakBench harmful (other source)", "jbb_harmful_recall"),
    ("FPR, JailbreakBench benign look-alikes", "jbb_benign_fpr"),
    ("over-refusal, XSTest safe (held-out half)", "xstest_safe_overrefusal"),
    ("recall, XSTest unsafe contrasts", "xstest_unsafe_recall"),
    ("recall, in-the-wild templates (later clusters)", "in_the_wild_heldout_recall"),
    ("recall, prompt injection (unseen categories)", "prompt_injection_heldout_recall"),
    ("FPR, clean e-mails (unseen)", "clean_email_fpr"),
    ("recall, held-out converters", "heldout_converter_recall"),
    ("output: JBB harmful target openings flagged", "output_jbb_target_recall"),
    ("output: JBB benign target openings flagged", "output_jbb_benign_target_fpr"),
)


def figure_lines(figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the realworld figures, converters last."""
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)

    rows = [(label, f(figures.get(key))) for label, key in FIGURE_ROWS]
    for name, v in figures.get("recall_by_converter", {}).items():
        mark = " (held out)" if v.get("heldout") else ""
        rows.append((f"  {name}{mark}: recall / FPR", f"{f(v['recall'])} / {f(v['fpr'])}"))
    return rows


def train_realworld_cli(out: Path, datasets: Path | None, limit: int | None,
                        target_fpr: float, heldout: Sequence[str] | None, augment: int,
                        seed: int, force: bool, backend: str = "ngram") -> None:
    """`swisscheese classifier train --preset realworld`: train, then print the figures."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from swisscheese.classifiers.bundle import load_bundle
    from swisscheese.progress import TaskBars, progress_bars

    check_datasets_dir(datasets)
    console = Console()
    with progress_bars(console) as bars:
        path = train_realworld(out, datasets, limit=limit, target_fpr=target_fpr,
                               heldout=heldout, augment=augment, seed=seed, backend=backend,
                               overwrite=force, progress=TaskBars(bars))
    b = load_bundle(path)
    t = Table(title=f"realworld guard bundle v{b.version}: held-out figures (target FPR "
                    f"{b.target_fpr})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for label, value in figure_lines(b.metrics["realworld"]):
        t.add_row(escape(label), value)
    console.print(t)
    console.print(f"[bold green]wrote[/] {escape(str(path))}", highlight=False, soft_wrap=True)
