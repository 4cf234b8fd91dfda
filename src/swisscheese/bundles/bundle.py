"""Guard bundles: the constitution, both classifiers and their calibrated thresholds, in
one versioned directory that training writes and the gateway loads (`build.build_bundle`
fits and calibrates one).

A bundle directory holds

    bundle.json        format, version, created, parent_version, notes, constitution_hash,
                       thresholds, target_fpr, stream_chunk_chars, training (how it was
                       trained: `record.TrainingRecord`), metrics (figures), and the sha256
                       of every other file in the directory
    constitution.yaml  the constitution in normalised form
    input/             the input classifier (its own `save` format)
    output/            the streaming output classifier (its own `save` format)
    categories/        optional: a category scorer (`classifiers.base.CategoryScorer`),
                       one score per harmful category of the constitution; bundle.json's
                       "categories" then holds {"thresholds": {category id: threshold}},
                       else null

`save_bundle` writes it atomically (a temporary sibling directory, verified by loading it
back, then renamed) and `load_bundle` checks everything it reads: an unusable bundle raises
`BundleError` naming the file, never falls back to a default.

The output threshold applies to the cumulative maximum of the streaming scores (what
`StreamGuard` blocks on), so it is calibrated on that maximum with the reply fed in chunks
of `stream_chunk_chars` characters, the same chunking `classify_file` uses.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from swisscheese.bundles.record import TrainingRecord, TrainingRecordError
from swisscheese.classifiers.base import (
    CategoryScorer,
    Classifier,
    Conversation,
    StreamingClassifier,
    StreamState,
    predict_stages,
)
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.classifiers.registry import load_category_scorer, load_classifier
from swisscheese.constitution import Constitution, ConstitutionError, load_constitution
from swisscheese.fileio import refuse_nonempty_dir, sha256_file, write_directory_atomically

FORMAT = "swisscheese.guard_bundle"
# 2: the training record moved out of `metrics` into its own key (see record.py).
# 3: an optional per-category scorer (`categories`); bundles of 1 and 2 load without one.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
META_FILE = "bundle.json"
CONSTITUTION_FILE = "constitution.yaml"
INPUT_DIR = "input"
OUTPUT_DIR = "output"
CATEGORIES_DIR = "categories"
DEFAULT_CATEGORY_THRESHOLD = 0.5
# About one model token: the gateway feeds replies token by token, and a finer chunking
# sees more prefixes, so calibrating near token size keeps the FPR honest for streaming.
DEFAULT_STREAM_CHUNK = 4
META_KEYS = ("format", "format_version", "version", "created", "parent_version", "notes",
             "constitution_hash", "thresholds", "target_fpr", "stream_chunk_chars", "training",
             "metrics", "categories", "files")
V2_META_KEYS = tuple(k for k in META_KEYS if k != "categories")
V1_META_KEYS = tuple(k for k in V2_META_KEYS if k != "training")


class BundleError(ValueError):
    """A guard bundle that cannot be written or used; the message names the file and
    what is wrong with it."""


@dataclass
class GuardBundle:
    """Everything a guard needs, as one versioned unit.

    `thresholds["input"]` applies to `input.score`; `thresholds["output"]` to the
    cumulative maximum of `output`'s streaming scores. A text is flagged at score >=
    threshold. `parent_version` is the bundle this one was derived from (rapid response),
    None for the first. `training` says how it was trained (a recipe, or "manual" for a
    bundle built directly); `metrics` holds figures only.
    """

    version: int
    constitution: Constitution
    input: Classifier
    output: StreamingClassifier
    thresholds: dict[str, float]
    target_fpr: float
    training: TrainingRecord = field(default_factory=TrainingRecord.manual)
    metrics: dict[str, Any] = field(default_factory=dict)
    parent_version: int | None = None
    notes: str = ""
    created: str = field(default_factory=lambda: now_iso())
    stream_chunk_chars: int = DEFAULT_STREAM_CHUNK
    categories: CategoryScorer | None = None
    category_thresholds: dict[str, float] = field(default_factory=dict)

    def input_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Input classifier scores of prompts (or rendered conversations)."""
        return self.input.predict_proba(texts)

    def input_stages(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Input scores and, for a cascade, the stage that decided each text (else None)."""
        return predict_stages(self.input, texts)

    @property
    def output_kind(self) -> str:
        """What the output classifier reads: "reply" (the reply alone) or "exchange" (each
        reply delta in the context of the conversation, which callers must then pass)."""
        return self.output.output_context

    def output_score(self, response: str, conversation: Conversation = None) -> float:
        """Cumulative-max streaming score of a whole response, fed in bundle-sized chunks.

        An exchange bundle needs the conversation the response answers (BundleError
        without it: judging the reply alone would be a silent fallback); pass [] to say
        explicitly that there was none."""
        return float(self.output_stream(response, conversation).max_score)

    def output_stream(self, response: str, conversation: Conversation = None) -> StreamState:
        """The output classifier's state after the whole response, fed as `output_score`
        feeds it (its `max_score` is that score; a cascade's `stage` says which stage
        scored it)."""
        if conversation is None:
            require_conversation(self, "output_score")
        return stream_state(self.output, response, conversation, self.stream_chunk_chars)

    def category_scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, each harmful category's score ({} per text without a scorer)."""
        if self.categories is None:
            return [{} for _ in texts]
        p = self.categories.predict_proba(list(texts)) if texts else np.zeros((0, 0))
        names = self.categories.categories
        return [{c: float(v) for c, v in zip(names, row, strict=True)} for row in p]

    def category_flags(self, scores: Mapping[str, float], flagged: bool) -> dict[str, bool]:
        """Which categories a verdict names: none unless the input layer flagged the text
        (so per-category flags never raise the calibrated false-positive rate); then each
        category at or above its threshold, or the highest-scoring one when none is."""
        flags = {c: flagged and s >= self.category_thresholds.get(
            c, DEFAULT_CATEGORY_THRESHOLD) for c, s in scores.items()}
        if flagged and scores and not any(flags.values()):
            flags[max(scores, key=lambda c: scores[c])] = True
        return flags

    def flag_input(self, score: float) -> bool:
        return score >= self.thresholds["input"]

    def flag_output(self, score: float) -> bool:
        return score >= self.thresholds["output"]


def require_conversation(bundle: GuardBundle, caller: str) -> None:
    """BundleError when `bundle`'s output classifier reads the conversation: for a caller
    that has none to give it."""
    if bundle.output_kind == "exchange":
        raise BundleError(f"{caller}: guard bundle v{bundle.version}'s output classifier "
                          "is an exchange classifier: it judges each reply in the "
                          "conversation that produced it, and none was given (give the "
                          "conversation, or use a bundle trained with --output-context reply)")


def now_iso() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def stream_max_score(classifier: StreamingClassifier, text: str,
                     conversation: Conversation = None,
                     chunk_chars: int = DEFAULT_STREAM_CHUNK) -> float:
    """Feed `text` to a streaming classifier `chunk_chars` characters at a time; return the
    cumulative maximum of the prefix scores (0.0 for an empty text: nothing was said)."""
    return float(stream_state(classifier, text, conversation, chunk_chars).max_score)


def stream_state(classifier: StreamingClassifier, text: str, conversation: Conversation = None,
                 chunk_chars: int = DEFAULT_STREAM_CHUNK) -> StreamState:
    """The stream state after `text` fed `chunk_chars` characters at a time (finished)."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
    state = classifier.start(conversation)
    for i in range(0, len(text), chunk_chars):
        state, _ = classifier.update(state, text[i:i + chunk_chars])
    if text:
        state, _ = classifier.finish(state)
    return state


# ---- validation shared by save and load ---------------------------------------------------
def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_prob(x: object) -> bool:
    return (isinstance(x, int | float) and not isinstance(x, bool)
            and math.isfinite(x) and 0.0 <= x <= 1.0)


def _check_fields(where: str, version: Any, created: Any, parent: Any, notes: Any,
                  thresholds: Any, target_fpr: Any, chunk: Any, metrics: Any) -> None:
    """Raise BundleError (prefixed with `where`) for the first field out of range."""
    def bad(message: str) -> BundleError:
        return BundleError(f"{where}: {message}")

    if not _is_int(version) or version < 1:
        raise bad(f"'version' must be an integer >= 1, got {version!r}")
    if not isinstance(created, str):
        raise bad(f"'created' must be an ISO 8601 time string, got {created!r}")
    try:
        datetime.fromisoformat(created)
    except ValueError:
        raise bad(f"'created' is not an ISO 8601 time: {created!r}") from None
    if parent is not None and (not _is_int(parent) or not 1 <= parent < version):
        raise bad(f"'parent_version' must be null or an integer in [1, {version}) "
                  f"(versions increase), got {parent!r}")
    if not isinstance(notes, str):
        raise bad(f"'notes' must be a string, got {type(notes).__name__}")
    if not isinstance(thresholds, Mapping) or set(thresholds) != {"input", "output"}:
        raise bad(f"'thresholds' must map exactly 'input' and 'output' to numbers, "
                  f"got {thresholds!r}")
    for k in ("input", "output"):
        if not is_prob(thresholds[k]):
            raise bad(f"thresholds[{k!r}] must be a number in [0, 1], got {thresholds[k]!r}")
    if not is_prob(target_fpr):
        raise bad(f"'target_fpr' must be a number in [0, 1], got {target_fpr!r}")
    if not _is_int(chunk) or chunk < 1:
        raise bad(f"'stream_chunk_chars' must be an integer >= 1, got {chunk!r}")
    if not isinstance(metrics, Mapping):
        raise bad(f"'metrics' must be a mapping, got {type(metrics).__name__}")


def _bundle_files(root: Path) -> list[str]:
    """Every file under `root` except bundle.json, as sorted POSIX relative paths."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if rel != META_FILE and (p.is_file() or p.is_symlink()):
            out.append(rel)
    return sorted(out)


# ---- save ---------------------------------------------------------------------------------
def save_bundle(bundle: GuardBundle, directory: str | Path, overwrite: bool = False) -> Path:
    """Write `bundle` to `directory` atomically; returns the directory.

    Everything is written to a temporary sibling directory and loaded back with
    `load_bundle` before it is renamed into place, so a reader never sees a half-written
    or unloadable bundle. An existing non-empty `directory` is replaced only with
    `overwrite=True`.
    """
    d = Path(directory)
    _check_fields(f"bundle version {bundle.version!r}", bundle.version, bundle.created,
                  bundle.parent_version, bundle.notes, bundle.thresholds, bundle.target_fpr,
                  bundle.stream_chunk_chars, bundle.metrics)
    if not isinstance(bundle.output, StreamingClassifier):
        raise BundleError(f"the output classifier must be a StreamingClassifier, got "
                          f"{type(bundle.output).__name__}")
    _check_categories(bundle.constitution, bundle.categories, bundle.category_thresholds,
                      f"bundle version {bundle.version!r}")
    refuse_nonempty_dir(d, "pass overwrite=True, or choose a new directory",
                        overwrite=overwrite, error=BundleError)
    try:
        metrics_json = json.loads(json.dumps(bundle.metrics, allow_nan=False))
        json.dumps(bundle.training.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise BundleError(f"bundle metrics or training record cannot be written as JSON "
                          f"({e})") from e

    def write(tmp: Path) -> None:
        (tmp / CONSTITUTION_FILE).write_text(bundle.constitution.to_yaml(), encoding="utf-8")
        bundle.input.save(tmp / INPUT_DIR)
        bundle.output.save(tmp / OUTPUT_DIR)
        if bundle.categories is not None:
            bundle.categories.save(tmp / CATEGORIES_DIR)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": bundle.version,
            "created": bundle.created,
            "parent_version": bundle.parent_version,
            "notes": bundle.notes,
            "constitution_hash": bundle.constitution.content_hash(),
            "thresholds": {k: float(bundle.thresholds[k]) for k in ("input", "output")},
            "target_fpr": float(bundle.target_fpr),
            "stream_chunk_chars": bundle.stream_chunk_chars,
            "training": bundle.training.to_dict(),
            "metrics": metrics_json,
            "categories": None if bundle.categories is None else {
                "thresholds": {c: float(bundle.category_thresholds.get(
                    c, DEFAULT_CATEGORY_THRESHOLD)) for c in bundle.categories.categories}},
            "files": {rel: sha256_file(tmp / rel) for rel in _bundle_files(tmp)},
        }
        # bundle.json last: its presence marks a complete bundle.
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        # Loading it back catches what would only fail at load time (e.g. a constitution
        # built in code that does not validate), while nothing has been replaced yet.
        check = load_bundle(tmp)
        if check.constitution.content_hash() != bundle.constitution.content_hash():
            raise BundleError(f"{tmp / CONSTITUTION_FILE}: the constitution does not read "
                              "back to the same content hash")

    return write_directory_atomically(d, write)


# ---- load ---------------------------------------------------------------------------------
def load_bundle(directory: str | os.PathLike[str]) -> GuardBundle:
    """Read and verify a bundle written by `save_bundle`.

    Checks the format, the sha256 of every file (and that no unlisted file is present),
    the constitution against its recorded hash, the thresholds, the training record, and
    that both classifiers load. Any problem raises BundleError naming the file. A
    format-1 bundle (the record kept among its metrics) is read too.
    """
    d = Path(directory)
    meta, mpath = _read_meta(d)
    _check_fields(str(mpath), meta["version"], meta["created"], meta["parent_version"],
                  meta["notes"], meta["thresholds"], meta["target_fpr"],
                  meta["stream_chunk_chars"], meta["metrics"])
    try:
        if meta["format_version"] == 1:
            training, metrics = TrainingRecord.from_v1_metrics(meta["metrics"], str(mpath))
        else:
            training, metrics = (TrainingRecord.from_dict(meta["training"], str(mpath)),
                                 dict(meta["metrics"]))
    except TrainingRecordError as e:
        raise BundleError(str(e)) from None
    _verify_files(d, mpath, meta["files"])
    constitution = _read_constitution(d, mpath, meta["constitution_hash"])
    input_clf = _load_classifier(d / INPUT_DIR)
    output_clf = _load_classifier(d / OUTPUT_DIR)
    if not isinstance(output_clf, StreamingClassifier):
        raise BundleError(f"{d / OUTPUT_DIR}: holds a {type(output_clf).__name__}, which "
                          "cannot score a stream; the output classifier must be streaming")
    scorer, cat_thresholds = _read_categories(d, mpath, meta.get("categories"), constitution)
    return GuardBundle(
        version=meta["version"], constitution=constitution, input=input_clf,
        output=output_clf,
        thresholds={k: float(meta["thresholds"][k]) for k in ("input", "output")},
        target_fpr=float(meta["target_fpr"]), training=training, metrics=metrics,
        parent_version=meta["parent_version"], notes=meta["notes"], created=meta["created"],
        stream_chunk_chars=meta["stream_chunk_chars"], categories=scorer,
        category_thresholds=cat_thresholds)


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """bundle.json of a bundle, checked for format and keys, without loading anything else
    (to say early what a bundle is, before its classifiers load)."""
    return _read_meta(Path(directory))[0]


def _read_meta(d: Path) -> tuple[dict[str, Any], Path]:
    if not d.is_dir():
        raise BundleError(f"{d}: not a directory; a guard bundle is a directory holding "
                          f"{META_FILE}")
    mpath = d / META_FILE
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing; is {d} a guard bundle?")
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath}: not readable JSON ({e})") from e
    if not isinstance(meta, dict):
        raise BundleError(f"{mpath}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise BundleError(f"{mpath}: format {meta.get('format')!r} is not {FORMAT!r}")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{mpath}: format_version {version!r}; this code reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}")
    keys = {1: V1_META_KEYS, 2: V2_META_KEYS}.get(version, META_KEYS)
    missing = [k for k in keys if k not in meta]
    if missing:
        raise BundleError(f"{mpath}: missing keys {', '.join(missing)}")
    unknown = sorted(set(meta) - set(keys))
    if unknown:
        raise BundleError(f"{mpath}: unknown keys {', '.join(unknown)}")
    return meta, mpath


def _read_constitution(d: Path, mpath: Path, want: Any) -> Constitution:
    cpath = d / CONSTITUTION_FILE
    try:
        constitution = load_constitution(cpath)
    except ConstitutionError as e:
        raise BundleError(f"{cpath}: not a valid constitution:\n{e}") from e
    got = constitution.content_hash()
    if got != want:
        raise BundleError(f"{cpath}: constitution hash {got} does not match "
                          f"constitution_hash {want!r} recorded in {mpath}")
    return constitution


def _verify_files(d: Path, mpath: Path, files: object) -> None:
    """Every listed file exists with its recorded sha256, and nothing unlisted is present."""
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise BundleError(f"{mpath}: 'files' must map relative paths to sha256 hex strings")
    for rel in (CONSTITUTION_FILE, f"{INPUT_DIR}/config.json", f"{OUTPUT_DIR}/config.json"):
        if rel not in files:
            raise BundleError(f"{mpath}: 'files' does not list {rel}")
    for rel, want in files.items():
        pp = PurePosixPath(rel)
        if pp.is_absolute() or ".." in pp.parts or rel in ("", META_FILE):
            raise BundleError(f"{mpath}: 'files' lists {rel!r}, which is not a file inside "
                              "the bundle")
        path = d / rel
        if path.is_symlink() or not path.is_file():
            raise BundleError(f"{path}: missing or not a regular file (listed in {mpath})")
        got = sha256_file(path)
        if got != want:
            raise BundleError(f"{path}: sha256 {got} does not match {want} recorded in "
                              f"{mpath}; the file was changed or corrupted")
    extra = [rel for rel in _bundle_files(d) if rel not in files]
    if extra:
        raise BundleError(f"{d / extra[0]}: not listed in {mpath}; a bundle holds only "
                          "files it can verify")


def _check_categories(constitution: Constitution, scorer: CategoryScorer | None,
                      thresholds: Mapping[str, float], where: str) -> None:
    """A category scorer scores exactly the constitution's harmful categories."""
    if scorer is None:
        return
    want = [c.id for c in constitution.harmful]
    if sorted(scorer.categories) != sorted(want):
        raise BundleError(f"{where}: the category scorer scores {list(scorer.categories)}, "
                          f"but the constitution's harmful categories are {want}")
    for c, t in thresholds.items():
        if c not in want or not is_prob(t):
            raise BundleError(f"{where}: category threshold {c!r}: {t!r} (needs a harmful "
                              "category of the constitution and a number in [0, 1])")


def _read_categories(d: Path, mpath: Path, raw: Any, constitution: Constitution
                     ) -> tuple[CategoryScorer | None, dict[str, float]]:
    """The category scorer and its thresholds (None, {} for a bundle without one)."""
    if raw is None:
        if (d / CATEGORIES_DIR).exists():
            raise BundleError(f"{d / CATEGORIES_DIR}: present, but {mpath} says the bundle "
                              "has no category scorer ('categories': null)")
        return None, {}
    if not isinstance(raw, Mapping) or set(raw) != {"thresholds"} or not isinstance(
            raw["thresholds"], Mapping):
        raise BundleError(f"{mpath}: 'categories' must be null or {{\"thresholds\": "
                          "{category id: number}}")
    try:
        scorer = load_category_scorer(d / CATEGORIES_DIR)
    except ClassifierError as e:
        raise BundleError(str(e)) from e
    thresholds = {str(k): v for k, v in raw["thresholds"].items()}
    _check_categories(constitution, scorer, thresholds, str(mpath))
    return scorer, {k: float(v) for k, v in thresholds.items()}


def _load_classifier(path: Path) -> Classifier:
    try:
        return load_classifier(path)
    except ClassifierError as e:
        # The classifier's own message already names the file.
        raise BundleError(str(e)) from e
