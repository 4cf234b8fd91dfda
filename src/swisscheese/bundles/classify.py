"""Score a file of prompts (and optional responses) with a guard bundle.

Input is JSON Lines (one object per line with a string `prompt`, or a `messages` list of
{role, content} turns, the conversation a reply answers; optional `response`) or CSV with
a `prompt` column (optional `response` column); the format is chosen by the extension.
The output has the same format and every original field, plus

    input_score   the input classifier's score of the prompt (of the whole conversation)
    output_score  where a response is given (a non-empty string): the cumulative maximum
                  of the streaming classifier's scores over the response, fed in the
                  bundle's chunk size with the whole conversation (the prompt as one user
                  turn) as context, as the gateway does; an exchange bundle reads it
    flagged       input_score >= the input threshold or output_score >= the output one
    categories    only where the bundle has a category scorer: each harmful category of its
                  constitution with its score and whether it is flagged (flagged only
                  when the input is), {"id": {"score": s, "flagged": b}}; in CSV a JSON
                  string
    stages        only where a classifier of the bundle is a cascade: the stage that
                  decided each layer, {"input": 1 or 2, "output": 1 or 2}; in CSV a JSON
                  string

Scores are in [0, 1], rounded to 6 places. Fields of those names already in the input are
replaced (re-scoring a scored file gives fresh values, not stale ones). The output is
written to a temporary file in the target directory and renamed at the end, so an error
leaves no output file.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from swisscheese.bundles import GuardBundle, load_bundle
from swisscheese.classifiers.base import render_conversation
from swisscheese.data.readers import errors_at, jsonl_objects

JSONL_SUFFIXES = (".jsonl", ".json-lines")
CSV_SUFFIXES = (".csv",)
SUPPORTED = (*JSONL_SUFFIXES, *CSV_SUFFIXES)
ADDED = ("input_score", "output_score", "flagged", "categories", "stages")
BATCH = 512  # rows scored per call of the input classifier: bounded memory, few calls


class ClassifyError(ValueError):
    """A file that cannot be classified; the message names the file (and line)."""


@dataclass
class ClassifySummary:
    """What `classify_file` did: counts and mean scores."""

    output_path: Path
    rows: int = 0
    flagged: int = 0
    input_flagged: int = 0
    output_flagged: int = 0
    responses: int = 0  # rows with a response, hence an output_score
    input_score_sum: float = 0.0
    output_score_sum: float = 0.0

    @property
    def mean_input_score(self) -> float | None:
        return self.input_score_sum / self.rows if self.rows else None

    @property
    def mean_output_score(self) -> float | None:
        return self.output_score_sum / self.responses if self.responses else None


def file_format(path: Path) -> str:
    """"jsonl" or "csv" from the extension; ClassifyError listing the supported ones."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise ClassifyError(f"{path}: unsupported extension {path.suffix or '(none)'!r}; "
                        f"supported: {', '.join(SUPPORTED)}")


# ---- readers: yield (line number, row, prompt, response or None, conversation) -------------
Row = tuple[int, dict[str, Any], str, str | None, list[dict[str, str]]]


def _user(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _messages(value: object, where: str) -> list[dict[str, str]]:
    """A `messages` field: a non-empty list of {role, content} with string values."""
    if not isinstance(value, list) or not value:
        raise ClassifyError(f"{where}: 'messages' must be a non-empty list of "
                            "{role, content} turns")
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise ClassifyError(f"{where}: messages[{i}] must be an object with string "
                                f"'role' and 'content', got {m!r}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _response(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClassifyError(f"{where}: 'response' must be a string, got "
                            f"{type(value).__name__}")
    return value


def _read_jsonl(f: IO[str], path: Path) -> Iterator[Row]:
    for lineno, row in jsonl_objects(f, errors_at(path, ClassifyError)):
        where = f"{path}:{lineno}"
        if "messages" in row:
            if "prompt" in row:
                raise ClassifyError(f"{where}: give 'prompt' or 'messages', not both")
            convo = _messages(row["messages"], where)
            yield (lineno, row, render_conversation(convo), _response(row.get("response"),
                                                                        where), convo)
            continue
        if "prompt" not in row:
            found = ", ".join(row) or "none"
            raise ClassifyError(f"{where}: no 'prompt' or 'messages' field (fields: {found})")
        prompt = row["prompt"]
        if not isinstance(prompt, str):
            raise ClassifyError(f"{where}: 'prompt' must be a string, got "
                                f"{type(prompt).__name__}")
        yield lineno, row, prompt, _response(row.get("response"), where), _user(prompt)


def _csv_reader(f: IO[str], path: Path) -> tuple[csv.DictReader, list[str]]:
    reader = csv.DictReader(f)
    columns = reader.fieldnames
    if not columns:
        raise ClassifyError(f"{path}: empty file; expected a header row with a 'prompt' column")
    columns = list(columns)
    if "prompt" not in columns:
        raise ClassifyError(f"{path}: no 'prompt' column; found columns: "
                            f"{', '.join(repr(c) for c in columns)}")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        # DictReader would keep only the last of them and the rewrite would lose data.
        raise ClassifyError(f"{path}: duplicate column names {', '.join(map(repr, dupes))}")
    return reader, columns


def _read_csv(reader: csv.DictReader, path: Path) -> Iterator[Row]:
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise ClassifyError(f"{where}: more cells than the {len(reader.fieldnames or [])}"
                                    " header columns")
            if row["prompt"] is None:
                raise ClassifyError(f"{where}: row has no 'prompt' cell (too few cells)")
            # Missing trailing cells read as None; write them back as empty cells.
            clean = {k: ("" if v is None else v) for k, v in row.items()}
            yield (reader.line_num, clean, clean["prompt"],
                   _response(clean.get("response"), where), _user(clean["prompt"]))
    except csv.Error as e:
        raise ClassifyError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def _newline(fmt: str) -> str | None:
    """The `newline` to open a file of `fmt` with: "" for CSV, whose module handles line
    endings (and newlines in cells) itself."""
    return "" if fmt == "csv" else None


def _rows_of(f: IO[str], path: Path, fmt: str) -> tuple[Iterator[Row], list[str]]:
    """The rows of an open input file, and its CSV columns ([] for JSONL)."""
    if fmt == "jsonl":
        return _read_jsonl(f, path), []
    reader, columns = _csv_reader(f, path)
    return _read_csv(reader, path), columns


def read_rows(path: str | Path) -> list[Row]:
    """Every row of a file in `classify`'s input format (JSONL or CSV), checked as
    `classify_file` checks it; ClassifyError naming the file and line otherwise."""
    src = Path(path)
    fmt = file_format(src)
    if not src.is_file():
        raise ClassifyError(f"{src}: no such file")
    try:
        with src.open(encoding="utf-8-sig", newline=_newline(fmt)) as f:
            return list(_rows_of(f, src, fmt)[0])
    except UnicodeDecodeError as e:
        raise ClassifyError(f"{src}: not UTF-8 text ({e.reason})") from None


# ---- scoring -------------------------------------------------------------------------------
def _score_batch(bundle: GuardBundle, batch: list[Row], summary: ClassifySummary,
                 csv_out: bool) -> Iterator[dict[str, Any]]:
    prompts = [prompt for _, _, prompt, _, _ in batch]
    scores, in_stages = bundle.input_stages(prompts)
    cat_scores = bundle.category_scores(prompts)
    for i, ((_, row, _prompt, response, convo), s_in, s_cat) in enumerate(
            zip(batch, scores, cat_scores, strict=True)):
        stages = {} if in_stages is None else {"input": int(in_stages[i])}
        s_in = float(s_in)
        flag_in = bundle.flag_input(s_in)
        out = dict(row)
        out["input_score"] = round(s_in, 6)
        _put_categories(out, bundle, s_cat, flag_in, csv_out)
        flag_out = False
        if response is None:
            out.pop("output_score", None)  # a stale score from an earlier run would mislead
            if csv_out:
                out["output_score"] = ""
        else:
            state = bundle.output_stream(response, convo)
            s_out = float(state.max_score)
            if state.stage is not None:
                stages["output"] = state.stage
            flag_out = bundle.flag_output(s_out)
            out["output_score"] = round(s_out, 6)
            summary.responses += 1
            summary.output_score_sum += s_out
            summary.output_flagged += flag_out
        _put_stages(out, stages, csv_out, cascade=is_cascade(bundle))
        flagged = flag_in or flag_out
        out["flagged"] = ("true" if flagged else "false") if csv_out else flagged
        summary.rows += 1
        summary.input_score_sum += s_in
        summary.input_flagged += flag_in
        summary.flagged += flagged
        yield out


def is_cascade(bundle: GuardBundle) -> bool:
    """Whether a classifier of `bundle` is a cascade (its decisions say which stage)."""
    return any(getattr(c, "staged", False) for c in (bundle.input, bundle.output))


def _put_stages(out: dict[str, Any], stages: dict[str, int], csv_out: bool,
                cascade: bool) -> None:
    """The row's `stages` field (dropped, or an empty CSV cell, for a bundle of no cascade)."""
    if not cascade:
        if out.pop("stages", None) is not None and csv_out:
            out["stages"] = ""
        return
    out["stages"] = json.dumps(stages) if csv_out else stages


def _put_categories(out: dict[str, Any], bundle: GuardBundle, scores: dict[str, float],
                    flag_in: bool, csv_out: bool) -> None:
    """The row's `categories` field (dropped, or an empty CSV cell, without a scorer)."""
    if bundle.categories is None:
        # A stale value from an earlier run would mislead; a CSV keeps its column.
        if out.pop("categories", None) is not None and csv_out:
            out["categories"] = ""
        return
    flags = bundle.category_flags(scores, flag_in)
    cats = {c: {"score": round(s, 6), "flagged": flags[c]} for c, s in scores.items()}
    out["categories"] = json.dumps(cats) if csv_out else cats


def _batched(rows: Iterator[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for r in rows:
        batch.append(r)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- on Ray: one bundle per actor, batches scored in parallel, written in order -------------
class _BundleWorker:
    def __init__(self, bundle_dir: str) -> None:
        self.bundle = load_bundle(bundle_dir)

    def score(self, item: tuple[list[Row], bool]) -> tuple[list[dict[str, Any]],
                                                           ClassifySummary]:
        batch, csv_out = item
        part = ClassifySummary(output_path=Path("."))
        return list(_score_batch(self.bundle, batch, part, csv_out)), part


def _merge(summary: ClassifySummary, part: ClassifySummary) -> None:
    for f in ("rows", "flagged", "input_flagged", "output_flagged", "responses",
              "input_score_sum", "output_score_sum"):
        setattr(summary, f, getattr(summary, f) + getattr(part, f))


def _ray_scorer(bundle_dir: str, workers: int | None) -> Any:
    """A scorer over Ray actors: (batches, summary, csv_out) -> scored rows, in order."""
    import ray

    from swisscheese.raycluster import default_workers, make_actor_class

    actors = [make_actor_class(_BundleWorker).remote(str(Path(bundle_dir).resolve()))
              for _ in range(default_workers(workers))]

    def score(batches: Iterator[list[Row]], summary: ClassifySummary,
              csv_out: bool) -> Iterator[dict[str, Any]]:
        pending: list[Any] = []
        window = 2 * len(actors)
        for k, batch in enumerate(batches):
            pending.append(actors[k % len(actors)].score.remote((batch, csv_out)))
            if len(pending) >= window:
                rows, part = ray.get(pending.pop(0))
                _merge(summary, part)
                yield from rows
        for ref in pending:
            rows, part = ray.get(ref)
            _merge(summary, part)
            yield from rows

    return score


def classify_file(bundle: GuardBundle | str | Path, input_path: str | Path,
                  output_path: str | Path, *, ray: bool = False,
                  ray_address: str | None = None,
                  ray_workers: int | None = None) -> ClassifySummary:
    """Score every row of `input_path` and write `output_path` in the same format.

    `bundle` is a GuardBundle or a bundle directory. Raises ClassifyError (or BundleError
    for a bad bundle directory); on any error no output file is left behind. With `ray`
    (a bundle directory then), batches are scored on Ray actors, one bundle each, and
    written in input order: the same file as in-process.
    """
    src, dst = Path(input_path), Path(output_path)
    fmt = file_format(src)
    allowed = ", ".join(JSONL_SUFFIXES if fmt == "jsonl" else CSV_SUFFIXES)
    try:
        out_fmt = file_format(dst)
    except ClassifyError:
        out_fmt = None
    if out_fmt != fmt:
        raise ClassifyError(f"{dst}: the output has the input's format ({fmt.upper()}), so "
                            f"its extension must be one of: {allowed}")
    if not src.is_file():
        raise ClassifyError(f"{src}: no such file")
    if not dst.parent.is_dir():
        raise ClassifyError(f"{dst.parent}: output directory does not exist")
    scorer: Any = None
    if ray or ray_address:
        if not isinstance(bundle, str | Path):
            raise ClassifyError("classify on Ray needs the bundle's directory (each actor "
                                "loads its own copy), not a loaded bundle")
        from swisscheese.raycluster import connect

        connect(ray_address)  # before the output file is created
        scorer = _ray_scorer(str(bundle), ray_workers)
    if isinstance(bundle, str | Path):
        bundle = load_bundle(bundle)
    loaded = bundle

    def scored(batches: Iterator[list[Row]], summary: ClassifySummary,
               csv_out: bool) -> Iterator[dict[str, Any]]:
        if scorer is not None:
            yield from scorer(batches, summary, csv_out)
            return
        for batch in batches:
            yield from _score_batch(loaded, batch, summary, csv_out)

    summary = ClassifySummary(output_path=dst)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    tmp = Path(tmp_name)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline=_newline(fmt)) as fout,
              src.open(encoding="utf-8-sig", newline=_newline(fmt)) as fin):
            rows, columns = _rows_of(fin, src, fmt)
            if fmt == "jsonl":
                for row in scored(_batched(rows), summary, False):
                    fout.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                added = [c for c in ADDED if c not in columns
                         and (c != "categories" or loaded.categories is not None)
                         and (c != "stages" or is_cascade(loaded))]
                writer = csv.DictWriter(fout, [*columns, *added])
                writer.writeheader()
                writer.writerows(scored(_batched(rows), summary, True))
        os.replace(tmp, dst)
    except UnicodeDecodeError as e:
        tmp.unlink(missing_ok=True)
        raise ClassifyError(f"{src}: not UTF-8 text ({e.reason})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary
