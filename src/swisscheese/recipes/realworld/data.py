"""The public datasets the `realworld` recipe reads, and how it splits them.

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
  question is whether templates of the past catch those that came later.
- **prompt injection**: BIPIA attack instructions inserted into BIPIA's e-mails; attack
  categories and e-mails are each split so that the test ones are unseen. The clean
  e-mails (with their question) are harmless.
- **harmless**: Alpaca instructions (train, calibration and test), XSTest's safe prompts
  (calibration and test halves within each type: the over-refusal figure), and
  JailbreakBench's benign look-alikes (test only).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swisscheese.data.dedup import clusters, max_similarity
from swisscheese.data.readers import read_csv, read_json, read_jsonl, strings_of


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
        else:
            out.train_harmful.append(g)
            out.train_harmful_groups.append(f"advbench:{c}")
            if r["target"].strip():
                out.out_harmful.append(r["target"].strip())


def _jailbreakbench(d: Path, out: RealWorldData, limit: int | None,
                    rng: random.Random) -> None:
    """JailbreakBench: another source, test only, minus near-duplicates of training."""
    jh = _csv(d / FILES["jbb_harmful"], ["Goal", "Target"])
    jb = _csv(d / FILES["jbb_benign"], ["goal", "target"])
    pairs = _cap(list(zip(jh, jb, strict=False)), limit, rng)
    sim = max_similarity([h["Goal"] for h, _ in pairs], out.train_harmful)
    for (h, b), s in zip(pairs, sim, strict=True):
        if s < 0.5:
            out.test_jbb_harmful.append(h["Goal"].strip())
            out.out_test_harmful.append(h["Target"].strip())
        out.test_jbb_benign.append(b["goal"].strip())
        out.out_test_benign.append(b["target"].strip())


def _xstest(d: Path, out: RealWorldData, limit: int | None, rng: random.Random) -> list[str]:
    """XSTest: safe prompts split in halves within each type (the calibration half is
    returned); unsafe contrasts test only."""
    by_type: dict[str, list[str]] = {}
    for r in _csv(d / FILES["xstest"], ["prompt", "type", "label"]):
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
    out.test_injections = _cap(out.test_injections, limit, rng)
    out.test_clean_emails = [_clean_email(e) for e in test_emails]
    return [train_clean[i] for i in keep], train_emails


def _alpaca(d: Path, out: RealWorldData, limit: int | None, rng: random.Random,
            sizes: tuple[int, int, int], safe_cal: list[str],
            train_emails: list[dict[str, Any]]) -> None:
    """Alpaca: train, calibration and test; the output side's harmless texts."""
    apath = d / FILES["alpaca"]
    alpaca_rows = _json(apath)
    if not isinstance(alpaca_rows, list):
        raise DatasetError(f"{apath}: expected a JSON list of objects with 'instruction'")
    alpaca = list(dict.fromkeys(strings_of(apath, alpaca_rows, "instruction", DatasetError)))
    rng.shuffle(alpaca)
    n_tr, n_cal, n_te = (min(n, limit) if limit is not None else n for n in sizes)
    out.train_benign = alpaca[:n_tr]
    out.calibration = alpaca[n_tr:n_tr + n_cal] + safe_cal
    out.test_benign = alpaca[n_tr + n_cal:n_tr + n_cal + n_te]
    openings = [o for o in map(affirmative_opening, alpaca[:n_tr]) if o]
    out.out_benign = (alpaca[:n_tr] + openings
                      + [e["ideal"] for e in train_emails
                         if isinstance(e.get("ideal"), str) and e["ideal"]])
    out.out_calibration = alpaca[n_tr:n_tr + n_cal] + [
        o for o in map(affirmative_opening, alpaca[n_tr:n_tr + n_cal]) if o]


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
    out.train_clean_emails, train_emails = _injections(d, out, limit, rng)
    _alpaca(d, out, limit, rng, alpaca_sizes, safe_cal, train_emails)
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
