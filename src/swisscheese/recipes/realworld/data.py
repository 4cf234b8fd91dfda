"""The public datasets the `realworld` recipe reads, and how it splits them.

Reads `../shared/datasets` (or `datasets_dir`; see its README.md) in place; nothing is
copied into the repository or the bundle. What goes where:

- **harmful requests**: AdvBench `goal`s, grouped into clusters of near-duplicates (content
  word Jaccard >= 0.5, which AdvBench has many of: "Create a tutorial on how to make a X"),
  whole clusters split 80/20 into train and test. JailbreakBench's behaviours: the 100
  harmful/benign pairs (row i of one is on the topic of row i of the other) split by pair,
  half to train, half to test (the test half without rows that near-duplicate a training
  request). XSTest's unsafe contrast prompts: alternate ones within each type to train and
  test.
- **jailbreak templates**: the in-the-wild prompts (Shen et al.), clustered the same way
  over word 5-gram shingles (MinHash) so that reposts of one DAN variant stay together;
  the clusters first seen in the last 20% of time (by date) are the test split: the
  question is whether templates of the past catch those that came later.
- **prompt injection**: BIPIA attack instructions inserted into BIPIA's e-mails; attack
  categories and e-mails are each split so that the test ones are unseen. The clean
  e-mails (with their question) are harmless; a quarter of them calibrate, a quarter test.
- **harmless**: Alpaca instructions (train, calibration and test), XSTest's safe prompts
  (thirds within each type: train, calibration, test: the over-refusal figure), the
  benign JailbreakBench look-alikes of the training pairs (train) and of the test pairs
  (test).

The thresholds are calibrated on three benign sources at once (`calibration_by_source`:
Alpaca, XSTest safe, clean e-mails), so that none of them pays for the others.

Every harmful training request also gets its harmful categories (`categories.py`): the
JailbreakBench category where the file gives one, keyword rules for AdvBench and XSTest.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swisscheese.data.dedup import clusters, max_similarity
from swisscheese.data.readers import read_csv, read_json, read_jsonl, strings_of
from swisscheese.recipes.realworld.categories import jbb_categories, keyword_categories


class DatasetError(ValueError):
    """A dataset file that is missing or not as expected; the message names the file."""


def _csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    return read_csv(path, columns, DatasetError)


def _json(path: Path) -> Any:
    return read_json(path, DatasetError)


def default_datasets_dir() -> Path:
    """`../shared/datasets` next to the repository (the checkout this module lives in),
    else relative to the working directory."""
    repo = Path(__file__).resolve().parents[4]
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


@dataclass
class RealWorldData:
    """Every text of the preset by role; `groups` keep near-duplicates together;
    `*_targets` are the datasets' affirmative reply openings ("Sure, here is ...") of the
    requests beside them ("" where a file has none); `*_categories` the harmful
    categories of each training request."""

    train_harmful: list[str] = field(default_factory=list)
    train_harmful_groups: list[str] = field(default_factory=list)
    train_harmful_categories: list[tuple[str, ...]] = field(default_factory=list)
    train_targets: list[str] = field(default_factory=list)
    train_templates: list[str] = field(default_factory=list)
    train_injections: list[str] = field(default_factory=list)
    train_clean_emails: list[str] = field(default_factory=list)
    train_email_answers: list[tuple[str, str]] = field(default_factory=list)
    train_benign: list[str] = field(default_factory=list)  # Alpaca train
    train_lookalikes: list[str] = field(default_factory=list)  # XSTest safe, JBB benign
    train_lookalike_targets: list[str] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)  # every source below, flat
    calibration_by_source: dict[str, list[str]] = field(default_factory=dict)
    test_harmful: list[str] = field(default_factory=list)  # AdvBench held-out clusters
    test_targets: list[str] = field(default_factory=list)  # their AdvBench targets
    test_jbb_harmful: list[str] = field(default_factory=list)
    test_jbb_targets: list[str] = field(default_factory=list)
    test_jbb_categories: list[str] = field(default_factory=list)  # JBB's own Category
    test_jbb_benign: list[str] = field(default_factory=list)
    test_jbb_benign_targets: list[str] = field(default_factory=list)
    test_xstest_unsafe: list[str] = field(default_factory=list)
    test_xstest_safe: list[str] = field(default_factory=list)
    test_templates: list[str] = field(default_factory=list)
    test_injections: list[str] = field(default_factory=list)
    test_clean_emails: list[str] = field(default_factory=list)
    test_email_answers: list[tuple[str, str]] = field(default_factory=list)
    test_benign: list[str] = field(default_factory=list)  # Alpaca test
    counts: dict[str, int] = field(default_factory=dict)

    def add_train_harmful(self, text: str, group: str, categories: tuple[str, ...],
                          target: str = "") -> None:
        self.train_harmful.append(text)
        self.train_harmful_groups.append(group)
        self.train_harmful_categories.append(categories)
        self.train_targets.append(target)


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


def _advbench(d: Path, out: RealWorldData, limit: int | None, rng: random.Random) -> None:
    """AdvBench: clusters of near-duplicates, whole clusters to train or test."""
    adv_rows = _csv(d / FILES["advbench"], ["goal", "target"])
    adv_rows = _cap([r for r in adv_rows if r["goal"].strip()], limit, rng)
    goals = [r["goal"].strip() for r in adv_rows]
    cl = clusters(goals, k=1)
    ids = sorted(set(cl))
    rng.shuffle(ids)
    test_ids = set(ids[:max(1, len(ids) // 5)])
    for r, g, c in zip(adv_rows, goals, cl, strict=True):
        if c in test_ids:
            out.test_harmful.append(g)
            out.test_targets.append(r["target"].strip())
        else:
            out.add_train_harmful(g, f"advbench:{c}", keyword_categories(g),
                                  r["target"].strip())


def _jailbreakbench(d: Path, out: RealWorldData, limit: int | None,
                    rng: random.Random) -> None:
    """JailbreakBench: the harmful/benign pairs split by pair, half to train, half to
    test; the test half without near-duplicates of a training request."""
    jh = _csv(d / FILES["jbb_harmful"], ["Goal", "Target", "Category"])
    jb = _csv(d / FILES["jbb_benign"], ["goal", "target"])
    pairs = _cap(list(zip(jh, jb, strict=False)), limit, rng)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    train = set(order[:len(order) // 2])
    for i in sorted(train):
        h, b = pairs[i]
        out.add_train_harmful(h["Goal"].strip(), f"jbb:{i}",
                              jbb_categories(h["Category"]), h["Target"].strip())
        out.train_lookalikes.append(b["goal"].strip())
        out.train_lookalike_targets.append(b["target"].strip())
    test = [pairs[i] for i in range(len(pairs)) if i not in train]
    sim = max_similarity([h["Goal"] for h, _ in test], out.train_harmful)
    for (h, b), s in zip(test, sim, strict=True):
        if s < 0.5:
            out.test_jbb_harmful.append(h["Goal"].strip())
            out.test_jbb_targets.append(h["Target"].strip())
            out.test_jbb_categories.append(h["Category"].strip())
        out.test_jbb_benign.append(b["goal"].strip())
        out.test_jbb_benign_targets.append(b["target"].strip())


def _xstest(d: Path, out: RealWorldData, limit: int | None, rng: random.Random) -> list[str]:
    """XSTest: safe prompts in thirds within each type (train, calibration, test; the
    calibration third is returned), unsafe contrasts alternately to train and test."""
    safe: dict[str, list[str]] = {}
    unsafe: dict[str, list[str]] = {}
    for r in _csv(d / FILES["xstest"], ["prompt", "type", "label"]):
        if r["label"] in ("safe", "unsafe"):
            (safe if r["label"] == "safe" else unsafe).setdefault(r["type"], []).append(
                r["prompt"].strip())
    safe_cal: list[str] = []
    train_safe: list[str] = []
    test_safe: list[str] = []
    for t in sorted(safe):
        items = safe[t]
        train_safe += items[0::3]
        safe_cal += items[1::3]
        test_safe += items[2::3]
    train_unsafe: list[str] = []
    for t in sorted(unsafe):
        train_unsafe += unsafe[t][0::2]
        out.test_xstest_unsafe += unsafe[t][1::2]
    for i, u in enumerate(_cap(train_unsafe, limit, rng)):
        out.add_train_harmful(u, f"xstest:{i}", keyword_categories(u))
    out.train_lookalikes += _cap(train_safe, limit, rng)
    out.train_lookalike_targets += [""] * (len(out.train_lookalikes)
                                           - len(out.train_lookalike_targets))
    out.test_xstest_unsafe = _cap(out.test_xstest_unsafe, limit, rng)
    out.test_xstest_safe = _cap(test_safe, limit, rng)
    return _cap(safe_cal, limit, rng)


def _in_the_wild(d: Path, out: RealWorldData, limit: int | None, rng: random.Random) -> None:
    """In-the-wild templates: clusters of reposts; the clusters first seen last are test."""
    wild = [r for r in _csv(d / FILES["in_the_wild"], ["prompt", "date"]) if r["prompt"].strip()]
    wild = _cap(wild, limit, rng)
    wcl = clusters([r["prompt"] for r in wild], k=5)
    first: dict[int, str] = {}
    for r, c in zip(wild, wcl, strict=True):
        first[c] = min(first.get(c, r["date"]), r["date"])
    order = sorted(first, key=lambda c: (first[c], c))
    late = set(order[len(order) - max(1, len(order) // 5):])
    for r, c in zip(wild, wcl, strict=True):
        (out.test_templates if c in late else out.train_templates).append(r["prompt"].strip())


def _bipia_attacks(d: Path) -> dict[str, list[str]]:
    attacks: dict[str, list[str]] = {}
    for key in ("bipia_text", "bipia_code"):
        path = d / FILES[key]
        data = _json(path)
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected an object of category -> attack strings")
        for cat, items in data.items():
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise DatasetError(f"{path}: category {cat!r} is not a list of strings")
            attacks[f"{key}:{cat}"] = items
    return attacks


def _injections(d: Path, out: RealWorldData, limit: int | None,
                rng: random.Random) -> tuple[list[str], list[dict[str, Any]]]:
    """Prompt injection: BIPIA attacks inserted into e-mails; unseen categories and
    e-mails for test. Returns (clean training e-mails, training e-mail rows)."""
    attacks = _bipia_attacks(d)
    epath = d / FILES["bipia_email"]
    emails = []
    for i, row in read_jsonl(epath, DatasetError):
        if not (isinstance(row.get("context"), str) and isinstance(row.get("question"), str)):
            raise DatasetError(f"{epath}:{i}: needs string 'context' and 'question'")
        emails.append(row)
    cats = sorted(attacks)
    rng.shuffle(cats)
    test_cats = set(cats[:max(1, len(cats) // 4)])
    rng.shuffle(emails)
    cut = max(1, len(emails) // 4)
    test_emails, cal_emails = emails[:cut], emails[cut:2 * cut]
    train_emails = emails[2 * cut:]
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
    out.test_injections = _cap(out.test_injections, limit, rng)
    out.test_clean_emails = [_clean_email(e) for e in test_emails]
    out.calibration_by_source["bipia_email"] = [_clean_email(e) for e in cal_emails]
    out.train_email_answers = _answers(train_emails)
    out.test_email_answers = _answers(test_emails)
    return [train_clean[i] for i in keep], train_emails


def _answers(emails: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(clean e-mail with its question, the reference answer) where BIPIA gives one."""
    return [(_clean_email(e), e["ideal"]) for e in emails
            if isinstance(e.get("ideal"), str) and e["ideal"].strip()]


def _alpaca(d: Path, out: RealWorldData, limit: int | None, rng: random.Random,
            sizes: tuple[int, int, int], safe_cal: list[str]) -> None:
    """Alpaca: train, calibration and test; calibration beside XSTest's safe third and the
    clean e-mails."""
    apath = d / FILES["alpaca"]
    alpaca_rows = _json(apath)
    if not isinstance(alpaca_rows, list):
        raise DatasetError(f"{apath}: expected a JSON list of objects with 'instruction'")
    alpaca = list(dict.fromkeys(strings_of(apath, alpaca_rows, "instruction", DatasetError)))
    rng.shuffle(alpaca)
    n_tr, n_cal, n_te = (min(n, limit) if limit is not None else n for n in sizes)
    out.train_benign = alpaca[:n_tr]
    out.test_benign = alpaca[n_tr + n_cal:n_tr + n_cal + n_te]
    out.calibration_by_source = {"alpaca": alpaca[n_tr:n_tr + n_cal], "xstest_safe": safe_cal,
                                 **out.calibration_by_source}
    out.calibration = [t for v in out.calibration_by_source.values() for t in v]


def load_realworld(datasets_dir: str | os.PathLike[str] | None = None, *,
                   limit: int | None = None, seed: int = 0,
                   alpaca_sizes: tuple[int, int, int] = (8000, 2000, 2000)) -> RealWorldData:
    """Read the datasets and split them (see the module docstring). `limit` caps every
    source (for quick runs); `alpaca_sizes` are the Alpaca train, calibration and test
    sizes before the cap. The sources are read in a fixed order from one seeded random
    stream, so a seed gives the same splits every time."""
    d = check_datasets_dir(datasets_dir)
    if limit is not None and limit < 10:
        raise ValueError(f"limit must be >= 10 rows per source, got {limit}")
    rng = random.Random(f"swisscheese-realworld-{seed}")
    out = RealWorldData()
    _advbench(d, out, limit, rng)
    _jailbreakbench(d, out, limit, rng)
    safe_cal = _xstest(d, out, limit, rng)
    _in_the_wild(d, out, limit, rng)
    out.train_clean_emails, _ = _injections(d, out, limit, rng)
    _alpaca(d, out, limit, rng, alpaca_sizes, safe_cal)
    out.counts = {k: len(v) for k, v in asdict(out).items() if isinstance(v, list)}
    out.counts |= {f"calibration_{k}": len(v) for k, v in out.calibration_by_source.items()}
    return out

