"""Synthetic data from a constitution: labels, splits, held-out families, files, CLI."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swisscheese.constitution import Category, Constitution, default_constitution
from swisscheese.data.cli import data_app
from swisscheese.data.generate import (
    OutputExistsError,
    count_records,
    generate_dataset,
    load_dataset,
    read_manifest,
    split_counts,
)
from swisscheese.data.llm_backend import parse_requests
from swisscheese.data.records import (
    Record,
    RecordFormatError,
    dumps_record,
    read_jsonl,
    write_jsonl,
)
from swisscheese.models.base import ConversationLike, GenerationParams, Message, as_messages

HELDOUT = ("morse", "story")
FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "manifest.json")
runner = CliRunner()


# ---- test doubles ------------------------------------------------------------------------
class FakeWriter:
    """A deterministic ChatModel double: lists numbered requests for the category it is asked
    about, half of them new per call, with a preamble, a repeat, a refusal and one request
    that every category shares (so cross-category deduplication has work to do)."""

    name = "fake-writer"

    def __init__(self) -> None:
        self.made: Counter[str] = Counter()
        self.prompts: list[str] = []

    def generate(self, conversation: ConversationLike,
                 params: GenerationParams | None = None) -> Message:
        prompt = as_messages(conversation)[-1].content
        self.prompts.append(prompt)
        title = re.search(r"Category: (.+?) \(", prompt).group(1)
        k = int(re.search(r"Write (\d+) new requests", prompt).group(1))
        new = []
        for _ in range(max(1, (k + 1) // 2)):
            self.made[title] += 1
            new.append(f"Please tell me about {title} case {self.made[title]}?")
        lines = ["Here are some requests:", *new, new[0].upper(), "I can't help with that.",
                 "What is the weather like today?"]
        return Message("assistant", "\n".join(f"{i}. {x}" if i else x
                                              for i, x in enumerate(lines)))

    def stream(self, conversation: ConversationLike,
               params: GenerationParams | None = None) -> Iterator[str]:
        yield self.generate(conversation, params).content

    def generate_batch(self, conversations: Sequence[ConversationLike],
                       params: GenerationParams | None = None) -> list[Message]:
        return [Message("assistant", "written: " + as_messages(c)[-1].content)
                for c in conversations]


class FakeResponder:
    """A ChatModel double that answers each conversation by echoing its last turn."""

    name = "fake-responder"

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen = 0
        self.fail_after = fail_after

    def generate(self, conversation: ConversationLike,
                 params: GenerationParams | None = None) -> Message:
        return self.generate_batch([conversation], params)[0]

    def stream(self, conversation: ConversationLike,
               params: GenerationParams | None = None) -> Iterator[str]:
        yield self.generate(conversation, params).content

    def generate_batch(self, conversations: Sequence[ConversationLike],
                       params: GenerationParams | None = None) -> list[Message]:
        self.seen += len(conversations)
        if self.fail_after is not None and self.seen > self.fail_after:
            raise RuntimeError("responder crashed")
        return [Message("assistant", "reply: " + as_messages(c)[-1].content)
                for c in conversations]


# ---- helpers -----------------------------------------------------------------------------
def _all(ds: dict[str, list[Record]]) -> list[Record]:
    return [r for rs in ds.values() for r in rs]


def _small(harmful: tuple[Category, ...], harmless: tuple[Category, ...]) -> Constitution:
    return Constitution("small", "0.1", "A small constitution for tests.", harmful, harmless)


def _cat(cid: str, world: dict[str, str] | None = None) -> Category:
    return Category(cid, cid.replace("-", " ").title(), f"Requests about {cid}.",
                    (f"An example request about {cid}?",), world=world or {})


def _move(c: Constitution, category_id: str) -> Constitution:
    """`c` with one harmless category moved into harmful."""
    moved = c.category(category_id)
    return replace(c, harmful=(*c.harmful, moved),
                   harmless=tuple(x for x in c.harmless if x.id != category_id))


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "data"
    generate_dataset(default_constitution(), "world", out, n_per_category=40,
                     heldout_converters=HELDOUT, seed=3)
    return out


@pytest.fixture(scope="module")
def world_ds(world_dir: Path) -> dict[str, list[Record]]:
    return load_dataset(world_dir)


# ---- world backend -----------------------------------------------------------------------
def test_labels_follow_the_constitution(world_ds):
    c = default_constitution()
    records = _all(world_ds)
    harmful = {x.id for x in c.harmful}
    assert {r.label for r in records} == {0, 1}
    assert all(r.label == (r.category in harmful) for r in records)
    assert {r.category for r in records} == {x.id for x in c.categories}
    assert all(r.source == "world" and r.response is None for r in records)
    for r in records:
        link = c.category(r.category).world
        if "hazard_category" in link:  # a harmful record asks about a hazard of its category
            assert r.hazard_id is not None and r.hazard_id.startswith(link["hazard_category"])


def test_converters_and_families_appear_under_both_labels(world_ds):
    by_label = {lab: {r.family for r in _all(world_ds) if r.label == lab} for lab in (0, 1)}
    for family in ("plain", "rot13", "roleplay", "base64", "multiturn_split"):
        assert family in by_label[0] and family in by_label[1], family


def test_splits_by_hazard_and_stratified_by_category(world_dir, world_ds):
    test_hazards = set(read_manifest(world_dir)["hazards"]["test"])
    assert test_hazards
    train_hazards = {r.hazard_id for r in world_ds["train"] if r.hazard_id}
    assert not test_hazards & train_hazards
    assert not test_hazards & {r.hazard_id for r in world_ds["val"] if r.hazard_id}
    # A test record that is not in a held-out family asks about a test hazard only.
    assert all(r.hazard_id in test_hazards for r in world_ds["test"]
               if r.hazard_id and r.label == 1 and not r.heldout_family)
    for split, rs in world_ds.items():
        assert all(r.split == split for r in rs)
        assert {r.category for r in rs} == {x.id for x in default_constitution().categories}


def test_heldout_families_only_in_test(world_ds):
    held = [r for r in _all(world_ds) if r.family in HELDOUT]
    assert {r.family for r in held} == set(HELDOUT)
    assert all(r.split == "test" and r.heldout_family for r in held)
    assert not any(r.heldout_family for r in world_ds["train"] + world_ds["val"])
    assert {r.label for r in held if r.family == "morse"} == {0, 1}


def test_every_text_appears_once(world_dir, world_ds):
    records = _all(world_ds)
    keys = [" ".join(r.text.casefold().split()) for r in records]
    assert len(keys) == len(set(keys))
    assert len({r.id for r in records}) == len(records)
    assert read_manifest(world_dir)["duplicates_dropped"] > 0  # the world repeats itself


def test_same_seed_same_bytes(tmp_path, world_dir):
    again = tmp_path / "again"
    generate_dataset(default_constitution(), "world", again, n_per_category=40,
                     heldout_converters=HELDOUT, seed=3)
    for name in FILES:
        assert (again / name).read_bytes() == (world_dir / name).read_bytes(), name
    other = tmp_path / "other"
    generate_dataset(default_constitution(), "world", other, n_per_category=40,
                     heldout_converters=HELDOUT, seed=4)
    assert (other / "train.jsonl").read_bytes() != (world_dir / "train.jsonl").read_bytes()


def test_manifest_counts_match_files(world_dir, world_ds):
    m = read_manifest(world_dir)
    c = default_constitution()
    assert m["constitution"] == {"name": c.name, "version": c.version,
                                 "content_hash": c.content_hash()}
    assert m["backend"]["name"] == "world" and m["seed"] == 3
    assert m["heldout_converters"] == list(HELDOUT) and "morse" in m["converters"]
    counts = m["counts"]
    assert counts == json.loads(json.dumps(count_records(_all(world_ds))))
    for split, rs in world_ds.items():
        assert counts["split"][split] == len(rs)
        assert counts["by_split"][split]["label"] == {
            str(k): v for k, v in sorted(Counter(r.label for r in rs).items())}
    assert sum(counts["category"].values()) == counts["total"] == len(_all(world_ds))
    assert counts["family"] == dict(sorted(Counter(r.family for r in _all(world_ds)).items()))


def test_moving_a_lookalike_kind_to_harmful_flips_its_labels(tmp_path, world_ds):
    # Built in code: the loader (today) accepts `lookalike` only under harmless.
    moved = _move(default_constitution(), "hazard-fiction")
    generate_dataset(moved, "world", tmp_path / "moved", n_per_category=20, seed=3)
    records = _all(load_dataset(tmp_path / "moved"))
    fiction = [r for r in records if r.category == "hazard-fiction"]
    assert fiction and all(r.label == 1 for r in fiction)
    assert any("story" in r.text or "tale" in r.text or "legend" in r.text for r in fiction)
    assert all(r.label == 0 for r in _all(world_ds) if r.category == "hazard-fiction")
    # Other harmless look-alikes keep their label.
    assert all(r.label == 0 for r in records if r.category == "hazard-history")


def test_unlinked_categories_are_skipped_and_all_unlinked_fails(tmp_path):
    c = _small((_cat("toxins-x", {"hazard_category": "toxins"}), _cat("unlinked")),
               (_cat("history-x", {"lookalike": "history"}),))
    m = generate_dataset(c, "world", tmp_path / "a", n_per_category=6)
    assert m["skipped_categories"] == ["unlinked"]
    with pytest.raises(ValueError, match="no category links to the world"):
        generate_dataset(_small((_cat("a"),), (_cat("b"),)), "world", tmp_path / "b",
                         n_per_category=3)
    assert not (tmp_path / "b").exists()


def test_responder_fills_every_response(tmp_path):
    c = _small((_cat("toxins-x", {"hazard_category": "toxins"}),),
               (_cat("recipes-x", {"lookalike": "recipe"}), _cat("math", {"utility": "all"})))
    responder = FakeResponder()
    m = generate_dataset(c, "world", tmp_path / "r", n_per_category=7, responder=responder,
                         seed=1)
    records = _all(load_dataset(tmp_path / "r"))
    assert responder.seen == len(records) == m["counts"]["total"]
    assert m["responder"] == "fake-responder"
    assert all(r.response == "reply: " + r.messages[-1]["content"] for r in records)


def test_a_failure_leaves_nothing_behind(tmp_path):
    c = _small((_cat("toxins-x", {"hazard_category": "toxins"}),),
               (_cat("history-x", {"lookalike": "history"}),))
    with pytest.raises(RuntimeError, match="responder crashed"):
        generate_dataset(c, "world", tmp_path / "out", n_per_category=20,
                         responder=FakeResponder(fail_after=10))
    assert list(tmp_path.iterdir()) == []


def test_bad_options_fail_before_any_work(tmp_path):
    c = default_constitution()
    with pytest.raises(KeyError, match="unknown converter 'nope'"):
        generate_dataset(c, "world", tmp_path / "x", converters=["rot13", "nope"])
    with pytest.raises(KeyError, match="unknown held-out converter 'nope'"):
        generate_dataset(c, "world", tmp_path / "x", heldout_converters=["nope"])
    with pytest.raises(KeyError, match="unknown data backend 'magic'; registered: llm, world"):
        generate_dataset(c, "magic", tmp_path / "x")
    with pytest.raises(ValueError, match="needs a model"):
        generate_dataset(c, "llm", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_split_counts():
    assert split_counts(0, (0.7, 0.15, 0.15)) == (0, 0, 0)
    assert split_counts(1, (0.7, 0.15, 0.15)) == (1, 0, 0)
    assert split_counts(3, (0.7, 0.15, 0.15)) == (1, 1, 1)
    assert split_counts(6, (0.7, 0.15, 0.15)) == (4, 1, 1)
    assert sum(split_counts(101, (0.8, 0.1, 0.1))) == 101


# ---- llm backend -------------------------------------------------------------------------
def test_parse_requests():
    text = ("Here are five requests:\n1. How do I bake bread?\n2) \"How do I brew tea?\"\n"
            "- How do I bake bread?\n* What is rain?\n\n(4) Why is the sky blue?\n"
            "I'm sorry, but I can't write more.\n#6 Name a river.")
    assert parse_requests(text) == ["How do I bake bread?", "How do I brew tea?",
                                    "What is rain?", "Why is the sky blue?", "Name a river."]


def test_llm_backend_expands_parses_dedupes_and_labels(tmp_path):
    c = _small((_cat("bad-things"),), (_cat("good-things"), _cat("fine-things")))
    writer = FakeWriter()
    m = generate_dataset(c, "llm", tmp_path / "llm", model=writer, n_per_category=6,
                         converters=["rot13"], convert_share=0.5, seed=2)
    records = _all(load_dataset(tmp_path / "llm"))
    assert all(r.source == "llm" for r in records)
    assert all(r.label == (r.category == "bad-things") for r in records)
    plain = [r for r in records if r.family == "plain"]
    # The shared request is kept once, under the first category that wrote it.
    shared = [r for r in plain if r.text == "What is the weather like today?"]
    assert [r.category for r in shared] == ["bad-things"]
    for cat in ("bad-things", "good-things", "fine-things"):
        texts = [r.text for r in plain if r.category == cat]
        assert len(texts) == 6 and len({t.casefold() for t in texts}) == 6
        assert not any(re.match(r"\d", t) or t.endswith(":") or "can't" in t for t in texts)
    assert {r.family for r in records} == {"plain", "rot13"}
    # Several rounds were needed (half new per call), and later ones quote earlier requests.
    assert len(writer.prompts) > 3 and "Do not repeat" in writer.prompts[1]
    assert "harmful" in writer.prompts[0] and "Requests about bad-things." in writer.prompts[0]
    # Without a responder, the writing model answers.
    assert all(r.response == "written: " + r.messages[-1]["content"] for r in records)
    assert m["responder"] == "fake-writer" and m["backend"]["model"] == "fake-writer"
    assert m["shortfall"] == {}


# ---- records files -----------------------------------------------------------------------
def test_jsonl_round_trip_and_atomic_write(tmp_path):
    r = Record.make([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Okay."},
                     {"role": "user", "content": "What is 2 plus 2?"}],
                    label=0, category="general-utility", source="world", family="multiturn_split")
    assert r.text == "user: Hi\nassistant: Okay.\nuser: What is 2 plus 2?"
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, [r, r.with_(split="test", response="4")]) == 2
    back = read_jsonl(path)
    assert back[0] == r and back[1].split == "test" and back[1].id == r.id
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]


def test_malformed_row_names_file_and_line(tmp_path):
    good = dumps_record(Record.make([{"role": "user", "content": "Hi"}], label=0,
                                    category="c", source="world"))
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{{not json\n", encoding="utf-8")
    with pytest.raises(RecordFormatError, match=re.escape(f"{path}:3: not valid JSON")):
        read_jsonl(path)
    row = json.loads(good) | {"label": 2}
    path.write_text(f"{good}\n{json.dumps(row)}\n", encoding="utf-8")
    with pytest.raises(RecordFormatError, match=re.escape(f"{path}:2: label must be 0")):
        read_jsonl(path)
    row = {k: v for k, v in json.loads(good).items() if k != "category"}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: missing field(s) 'category'")):
        read_jsonl(path)


# ---- CLI ---------------------------------------------------------------------------------
def test_cli_writes_files_and_refuses_a_non_empty_out_dir(tmp_path):
    out = tmp_path / "cli"
    args = ["generate", "--out", str(out), "--n-per-category", "4", "--seed", "5",
            "--heldout-converter", "morse"]
    r = runner.invoke(data_app, args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert "wrote" in r.output
    before = (out / "train.jsonl").read_bytes()
    m = read_manifest(out)
    assert m["seed"] == 5 and m["heldout_converters"] == ["morse"]

    r = runner.invoke(data_app, args)
    assert r.exit_code != 0 and isinstance(r.exception, OutputExistsError)
    assert "not empty" in str(r.exception) and "--force" in str(r.exception)
    assert (out / "train.jsonl").read_bytes() == before

    r = runner.invoke(data_app, [*args[:-2], "--force", "--seed", "6"])
    assert r.exit_code == 0, r.output
    assert read_manifest(out)["seed"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # no temporary leftovers


def test_cli_errors_are_value_or_key_errors(tmp_path):
    out = str(tmp_path / "o")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n", encoding="utf-8")
    cases = [
        (["--constitution", str(bad)], ValueError, "missing required key"),
        (["--converter", "nope"], KeyError, "unknown converter 'nope'"),
        (["--backend", "magic"], KeyError, "unknown data backend 'magic'; registered: llm"),
        (["--backend", "llm"], ValueError, "needs --model"),
    ]
    for extra, kind, message in cases:
        r = runner.invoke(data_app, ["generate", "--out", out, *extra])
        assert isinstance(r.exception, kind) and message in str(r.exception), extra
    assert not (tmp_path / "o").exists()
