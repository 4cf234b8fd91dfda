"""Guard bundles: the constitution, both classifiers and their calibrated thresholds, in
one versioned directory that training writes and the gateway loads.

A bundle directory holds

    bundle.json        format, version, created, parent_version, notes, constitution_hash,
                       thresholds, target_fpr, stream_chunk_chars, metrics, and the sha256
                       of every other file in the directory
    constitution.yaml  the constitution in normalised form
    input/             the input classifier (its own `save` format)
    output/            the streaming output classifier (its own `save` format)

`save_bundle` writes it atomically (a temporary sibling directory, verified by loading it
back, then renamed) and `load_bundle` checks everything it reads: an unusable bundle raises
`BundleError` naming the file, never falls back to a default.

The output threshold applies to the cumulative maximum of the streaming scores (what
`StreamGuard` blocks on), so it is calibrated on that maximum with the reply fed in chunks
of `stream_chunk_chars` characters, the same chunking `classify_file` uses.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from swisscheese.classifiers.base import (
    Classifier,
    ClassifierError,
    Conversation,
    StreamingClassifier,
    check_texts,
)
from swisscheese.classifiers.calibrate import threshold_for_fpr
from swisscheese.classifiers.registry import CLASSIFIERS, get_classifier, load_classifier
from swisscheese.constitution import Constitution, ConstitutionError, load_constitution
from swisscheese.fileio import write_directory_atomically

FORMAT = "swisscheese.guard_bundle"
FORMAT_VERSION = 1
META_FILE = "bundle.json"
CONSTITUTION_FILE = "constitution.yaml"
INPUT_DIR = "input"
OUTPUT_DIR = "output"
# About one model token: the gateway feeds replies token by token, and a finer chunking
# sees more prefixes, so calibrating near token size keeps the FPR honest for streaming.
DEFAULT_STREAM_CHUNK = 4
META_KEYS = ("format", "format_version", "version", "created", "parent_version", "notes",
             "constitution_hash", "thresholds", "target_fpr", "stream_chunk_chars", "metrics",
             "files")


class BundleError(ValueError):
    """A guard bundle that cannot be written or used; the message names the file and
    what is wrong with it."""


@dataclass
class GuardBundle:
    """Everything a guard needs, as one versioned unit.

    `thresholds["input"]` applies to `input.score`; `thresholds["output"]` to the
    cumulative maximum of `output`'s streaming scores. A text is flagged at score >=
    threshold. `parent_version` is the bundle this one was derived from (rapid response),
    None for the first.
    """

    version: int
    constitution: Constitution
    input: Classifier
    output: StreamingClassifier
    thresholds: dict[str, float]
    target_fpr: float
    metrics: dict[str, Any] = field(default_factory=dict)
    parent_version: int | None = None
    notes: str = ""
    created: str = field(default_factory=lambda: now_iso())
    stream_chunk_chars: int = DEFAULT_STREAM_CHUNK

    def input_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Input classifier scores of prompts (or rendered conversations)."""
        return self.input.score(texts)

    def output_score(self, response: str, conversation: Conversation = None) -> float:
        """Cumulative-max streaming score of a whole response, fed in bundle-sized chunks."""
        return stream_max_score(self.output, response, conversation, self.stream_chunk_chars)

    def flag_input(self, score: float) -> bool:
        return score >= self.thresholds["input"]

    def flag_output(self, score: float) -> bool:
        return score >= self.thresholds["output"]


def now_iso() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def stream_max_score(classifier: StreamingClassifier, text: str,
                     conversation: Conversation = None,
                     chunk_chars: int = DEFAULT_STREAM_CHUNK) -> float:
    """Feed `text` to a streaming classifier `chunk_chars` characters at a time; return the
    cumulative maximum of the prefix scores (0.0 for an empty text: nothing was said)."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
    state = classifier.start(conversation)
    for i in range(0, len(text), chunk_chars):
        state, _ = classifier.update(state, text[i:i + chunk_chars])
    return float(state.max_score)


# ---- validation shared by save and load ---------------------------------------------------
def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_prob(x: object) -> bool:
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
        if not _is_prob(thresholds[k]):
            raise bad(f"thresholds[{k!r}] must be a number in [0, 1], got {thresholds[k]!r}")
    if not _is_prob(target_fpr):
        raise bad(f"'target_fpr' must be a number in [0, 1], got {target_fpr!r}")
    if not _is_int(chunk) or chunk < 1:
        raise bad(f"'stream_chunk_chars' must be an integer >= 1, got {chunk!r}")
    if not isinstance(metrics, Mapping):
        raise bad(f"'metrics' must be a mapping, got {type(metrics).__name__}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    if d.exists() and not d.is_dir():
        raise BundleError(f"{d}: exists and is not a directory")
    if d.is_dir() and any(d.iterdir()) and not overwrite:
        raise BundleError(f"{d}: directory is not empty; refusing to overwrite it "
                          "(pass overwrite=True, or choose a new directory)")
    try:
        metrics_json = json.loads(json.dumps(bundle.metrics, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise BundleError(f"bundle metrics cannot be written as JSON ({e})") from e

    def write(tmp: Path) -> None:
        (tmp / CONSTITUTION_FILE).write_text(bundle.constitution.to_yaml(), encoding="utf-8")
        bundle.input.save(tmp / INPUT_DIR)
        bundle.output.save(tmp / OUTPUT_DIR)
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
            "metrics": metrics_json,
            "files": {rel: _sha256(tmp / rel) for rel in _bundle_files(tmp)},
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
def load_bundle(directory: str | Path) -> GuardBundle:
    """Read and verify a bundle written by `save_bundle`.

    Checks the format, the sha256 of every file (and that no unlisted file is present),
    the constitution against its recorded hash, the thresholds, and that both
    classifiers load. Any problem raises BundleError naming the file.
    """
    d = Path(directory)
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
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{mpath}: format_version {meta.get('format_version')!r}; this "
                          f"code reads version {FORMAT_VERSION}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{mpath}: missing keys {', '.join(missing)}")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise BundleError(f"{mpath}: unknown keys {', '.join(unknown)}")
    _check_fields(str(mpath), meta["version"], meta["created"], meta["parent_version"],
                  meta["notes"], meta["thresholds"], meta["target_fpr"],
                  meta["stream_chunk_chars"], meta["metrics"])
    _verify_files(d, mpath, meta["files"])

    cpath = d / CONSTITUTION_FILE
    try:
        constitution = load_constitution(cpath)
    except ConstitutionError as e:
        raise BundleError(f"{cpath}: not a valid constitution:\n{e}") from e
    want = meta["constitution_hash"]
    got = constitution.content_hash()
    if got != want:
        raise BundleError(f"{cpath}: constitution hash {got} does not match "
                          f"constitution_hash {want!r} recorded in {mpath}")

    input_clf = _load_classifier(d / INPUT_DIR)
    output_clf = _load_classifier(d / OUTPUT_DIR)
    if not isinstance(output_clf, StreamingClassifier):
        raise BundleError(f"{d / OUTPUT_DIR}: holds a {type(output_clf).__name__}, which "
                          "cannot score a stream; the output classifier must be streaming")
    return GuardBundle(
        version=meta["version"], constitution=constitution, input=input_clf,
        output=output_clf,
        thresholds={k: float(meta["thresholds"][k]) for k in ("input", "output")},
        target_fpr=float(meta["target_fpr"]), metrics=dict(meta["metrics"]),
        parent_version=meta["parent_version"], notes=meta["notes"], created=meta["created"],
        stream_chunk_chars=meta["stream_chunk_chars"])


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
        got = _sha256(path)
        if got != want:
            raise BundleError(f"{path}: sha256 {got} does not match {want} recorded in "
                              f"{mpath}; the file was changed or corrupted")
    extra = [rel for rel in _bundle_files(d) if rel not in files]
    if extra:
        raise BundleError(f"{d / extra[0]}: not listed in {mpath}; a bundle holds only "
                          "files it can verify")


def _load_classifier(path: Path) -> Classifier:
    try:
        return load_classifier(path)
    except ClassifierError as e:
        # The classifier's own message already names the file.
        raise BundleError(str(e)) from e


# ---- build --------------------------------------------------------------------------------
def _streaming_backend(backend: str) -> str:
    """The registered streaming twin of `backend` ("ngram" -> "ngram-stream")."""
    for name in (f"{backend}-stream", backend):
        cls = CLASSIFIERS.get(name)
        if cls is not None and issubclass(cls, StreamingClassifier):
            return name
    streaming = sorted(n for n, c in CLASSIFIERS.items() if issubclass(c, StreamingClassifier))
    raise KeyError(f"no streaming classifier for backend {backend!r}; pass output_backend, "
                   f"one of: {', '.join(streaming)}")


def _calibrate(scores: np.ndarray, target_fpr: float, which: str) -> float:
    t = threshold_for_fpr(scores, target_fpr)
    if t > 1.0:
        # A benign text scored exactly 1.0: only a threshold above 1 would pass it, and a
        # bundle's thresholds are probabilities. Clamping would silently break the target.
        raise ValueError(f"{which} calibration: a benign text scores 1.0, so no threshold in "
                         f"[0, 1] keeps the FPR <= {target_fpr}; check the calibration set "
                         "or raise target_fpr")
    return t


def build_bundle(
    constitution: Constitution,
    train_texts: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    benign_calibration_texts: Sequence[str],
    output_train_texts: Sequence[str],
    output_train_labels: Sequence[int] | np.ndarray,
    benign_output_texts: Sequence[str],
    *,
    target_fpr: float = 0.005,
    backend: str = "ngram",
    output_backend: str | None = None,
    input_params: Mapping[str, Any] | None = None,
    output_params: Mapping[str, Any] | None = None,
    version: int = 1,
    parent_version: int | None = None,
    notes: str = "",
    stream_chunk_chars: int = DEFAULT_STREAM_CHUNK,
) -> GuardBundle:
    """Fit both classifiers, calibrate their thresholds on benign traffic, and bundle them.

    The input classifier (registry name `backend`, constructor kwargs `input_params`) is
    fitted on prompts; the output classifier (`output_backend`, default the streaming twin
    of `backend`) on replies. Each threshold is the smallest whose false-positive rate on
    the benign calibration set is <= `target_fpr`; for the output, on the cumulative-max
    streaming score. The calibration texts should be held out of training, or the FPR
    will be optimistic. `metrics` records the achieved calibration FPRs and set sizes and
    the detection rate on the harmful training texts (a training-set figure).
    """
    if not _is_prob(target_fpr):
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr!r}")
    calib_in = check_texts(benign_calibration_texts)
    calib_out = check_texts(benign_output_texts)
    if not calib_in or not calib_out:
        raise ValueError("benign_calibration_texts and benign_output_texts must not be empty: "
                         "the thresholds are calibrated on them")
    out_name = output_backend or _streaming_backend(backend)

    input_clf = get_classifier(backend, **dict(input_params or {}))
    input_clf.fit(train_texts, train_labels)
    output_clf = get_classifier(out_name, **dict(output_params or {}))
    if not isinstance(output_clf, StreamingClassifier):
        raise ValueError(f"output backend {out_name!r} is not a streaming classifier")
    output_clf.fit(output_train_texts, output_train_labels)

    in_scores = input_clf.score(calib_in)
    t_in = _calibrate(in_scores, target_fpr, "input")
    out_scores = np.array([stream_max_score(output_clf, t, None, stream_chunk_chars)
                           for t in calib_out])
    t_out = _calibrate(out_scores, target_fpr, "output")

    # Detection on the harmful training texts: optimistic, but a quick sanity figure.
    in_pos = [t for t, y in zip(check_texts(train_texts), np.asarray(train_labels), strict=True)
              if y == 1]
    out_pos = [t for t, y in zip(check_texts(output_train_texts),
                                 np.asarray(output_train_labels), strict=True) if y == 1]
    in_tpr = float(np.mean(input_clf.score(in_pos) >= t_in))
    out_tpr = float(np.mean([stream_max_score(output_clf, t, None, stream_chunk_chars) >= t_out
                             for t in out_pos]))
    metrics: dict[str, Any] = {
        "input": {"backend": backend, "calibration_fpr": float(np.mean(in_scores >= t_in)),
                  "calibration_n": len(calib_in), "train_n": len(train_texts),
                  "train_tpr": in_tpr},
        "output": {"backend": out_name, "calibration_fpr": float(np.mean(out_scores >= t_out)),
                   "calibration_n": len(calib_out), "train_n": len(output_train_texts),
                   "train_tpr": out_tpr},
    }
    return GuardBundle(
        version=version, constitution=constitution, input=input_clf, output=output_clf,
        thresholds={"input": t_in, "output": t_out}, target_fpr=float(target_fpr),
        metrics=metrics, parent_version=parent_version, notes=notes,
        stream_chunk_chars=stream_chunk_chars)
