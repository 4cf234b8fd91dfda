"""The constitution: the default loads and covers the world; bad files give numbered lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swisscheese.constitution import (
    Constitution,
    ConstitutionError,
    default_constitution,
    load_constitution,
    parse_constitution,
)
from swisscheese.constitution.cli import constitution_app
from swisscheese.constitution.loader import default_constitution_text
from swisscheese.world import CATEGORIES, LOOKALIKE_KINDS

runner = CliRunner()

# Line numbers matter below: the text starts on line 1 (no leading newline).
VALID = textwrap.dedent("""\
    name: tiny
    version: "0.1"
    description: A tiny constitution for tests.
    harmful:
      - id: toxin-brewing
        title: Brewing toxins
        description: Steps for brewing invented toxins.
        world: {hazard_category: toxins}
        examples:
          - How do I brew the Demze toxin?
    harmless:
      - id: hazard-history
        title: History
        description: The history of a hazard.
        world: {lookalike: history}
        examples:
          - What is the history of the Demze toxin?
    """)


def problems(text: str) -> list[str]:
    """The problem lines that parsing `text` reports (fails if it parses)."""
    with pytest.raises(ConstitutionError) as info:
        parse_constitution(text, "c.yaml")
    return str(info.value).splitlines()


def edit(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


# ---- the default constitution ----------------------------------------------------------------

def test_default_constitution_loads():
    c = default_constitution()
    assert isinstance(c, Constitution)
    assert c.name and c.version and c.description
    assert all(cat.examples and cat.description for cat in c.categories)


def test_default_covers_every_hazard_category_once():
    c = default_constitution()
    linked = [cat.world["hazard_category"] for cat in c.harmful]
    assert sorted(linked) == sorted(cat.id for cat in CATEGORIES)
    assert len(c.harmful) == len(CATEGORIES) == 8


def test_default_covers_every_lookalike_kind_and_utility():
    c = default_constitution()
    assert c.linked("lookalike") == set(LOOKALIKE_KINDS)
    assert "all" in c.linked("utility")
    assert not c.linked("hazard_category") & {cat.id for cat in c.harmless}


def test_default_harmless_examples_name_world_hazards_not_procedures():
    c = default_constitution()
    history = c.category("hazard-history")
    assert any("Demze toxin" in e for e in history.examples)
    assert not c.is_harmful("hazard-history") and c.is_harmful("toxin-brewing")


def test_yaml_round_trip_keeps_meaning():
    c = default_constitution()
    again = parse_constitution(c.to_yaml())
    assert again == c
    assert again.content_hash() == c.content_hash()


# ---- the hash ----------------------------------------------------------------------------------

def test_hash_ignores_comments_and_formatting():
    reformatted = textwrap.dedent("""\
        # a comment that changes nothing
        name: 'tiny'
        version: '0.1'
        description: >
          A tiny constitution
          for tests.
        harmful:
        - description: "Steps for brewing invented toxins."   # key order differs
          id: toxin-brewing
          title: Brewing toxins
          world:
            hazard_category: toxins
          examples: ["How do I brew the Demze toxin?"]
        harmless:
        - {id: hazard-history, title: History, description: The history of a hazard.,
           world: {lookalike: history}, examples: ["What is the history of the Demze toxin?"]}
        """)
    expected = parse_constitution(VALID).content_hash()
    assert parse_constitution(reformatted).content_hash() == expected


def test_hash_changes_with_a_description():
    before = parse_constitution(VALID).content_hash()
    after = parse_constitution(edit("The history of a hazard.", "The history of a toxin.")
                               ).content_hash()
    assert before != after and len(before) == 64


# ---- errors, each with its line ----------------------------------------------------------------

def test_typo_key_suggests_the_known_key():
    lines = problems(edit("    description: The history", "    descripton: The history"))
    assert lines == ["c.yaml:14: unknown key 'descripton' in harmless category "
                     "'hazard-history'; did you mean 'description'?"]


def test_missing_description_points_at_the_category():
    lines = problems(edit("    description: Steps for brewing invented toxins.\n", ""))
    assert len(lines) == 1
    assert lines[0].startswith("c.yaml:5: missing required key 'description'")


def test_empty_description_and_empty_examples():
    text = edit("description: Steps for brewing invented toxins.", "description: '  '")
    text = text.replace("    examples:\n      - What is the history of the Demze toxin?\n",
                        "    examples: []\n")
    lines = problems(text)
    assert lines[0].startswith("c.yaml:7: description of harmful category 'toxin-brewing' is")
    assert lines[1].startswith("c.yaml:16: examples of harmless category 'hazard-history' is")


def test_duplicate_id_across_sections():
    lines = problems(edit("id: hazard-history", "id: toxin-brewing"))
    assert lines == ["c.yaml:12: duplicate category id 'toxin-brewing' (first defined at line 5)"]


def test_bad_slug_id():
    lines = problems(edit("id: hazard-history", "id: Hazard History"))
    assert len(lines) == 1 and lines[0].startswith("c.yaml:12: bad id 'Hazard History'")
    assert "'hazard-history'" in lines[0]


def test_unknown_hazard_category():
    lines = problems(edit("{hazard_category: toxins}", "{hazard_category: toxin}"))
    assert len(lines) == 1
    assert lines[0].startswith("c.yaml:8: unknown hazard category 'toxin'")
    assert "did you mean 'toxins'?" in lines[0]


def test_unknown_lookalike_kind_and_wrong_section():
    lines = problems(edit("{lookalike: history}", "{lookalike: gossip, hazard_category: hexes}"))
    assert lines[0].startswith("c.yaml:15: unknown look-alike kind 'gossip'")
    assert lines[1].startswith("c.yaml:15: world.hazard_category belongs in a harmful category")


def test_yaml_syntax_error_has_its_line():
    lines = problems(edit("    title: History\n", "    title: History: of\n"))
    assert len(lines) == 1 and lines[0].startswith("c.yaml:13: YAML syntax error:")


def test_wrong_types():
    lines = problems(edit("title: Brewing toxins", "title: [Brewing, toxins]").replace(
        "harmless:\n  - id", "harmless:\n  -  yes\n  - id"))
    assert lines[0] == "c.yaml:6: title of harmful category 'toxin-brewing' must be a string, " \
                       "got a list"
    assert lines[1].startswith("c.yaml:12: harmless category #1 must be a mapping")


def test_example_that_yaml_reads_as_a_boolean():
    lines = problems(edit("  - What is the history of the Demze toxin?", "  - no"))
    assert lines == ["c.yaml:17: an example of harmless category 'hazard-history' must be a "
                     "string, got a boolean (put it in quotes: \"no\")"]


def test_top_level_must_be_a_mapping():
    assert problems("- a\n- b\n")[0].startswith("c.yaml:1: the top level must be a mapping")
    assert problems("")[0].startswith("c.yaml:1: the file is empty")


def test_all_problems_are_reported_in_file_order():
    text = (edit("version: \"0.1\"\n", "")
            .replace("title: Brewing toxins", "titel: Brewing toxins")
            .replace("{lookalike: history}", "{lookalike: rumours}")
            + "extra: 1\n")
    lines = problems(text)
    assert [line.split(":")[1] for line in lines] == ["1", "5", "14", "17"]
    assert "missing required key 'version'" in lines[0]
    assert "did you mean 'title'?" in lines[1]
    assert "unknown look-alike kind 'rumours'" in lines[2]
    assert "unknown key 'extra' at the top level" in lines[3]


def test_missing_file_is_named(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConstitutionError, match="nope.yaml: no such file"):
        load_constitution(missing)


def test_error_is_a_value_error():
    assert issubclass(ConstitutionError, ValueError)


# ---- the CLI -----------------------------------------------------------------------------------

def test_check_default_file(tmp_path: Path):
    f = tmp_path / "default.yaml"
    f.write_text(default_constitution_text())
    r = runner.invoke(constitution_app, ["check", str(f)])
    assert r.exit_code == 0, r.output
    c = default_constitution()
    assert c.name in r.output and c.content_hash() in r.output
    assert "8 categories" in r.output


def test_check_broken_file(tmp_path: Path):
    f = tmp_path / "broken.yaml"
    f.write_text(edit("{hazard_category: toxins}", "{hazard_category: toxin}")
                 .replace("id: hazard-history", "id: toxin-brewing"))
    r = runner.invoke(constitution_app, ["check", str(f)])
    assert r.exit_code == 1
    assert f"{f}:8: unknown hazard category 'toxin'" in r.output
    assert f"{f}:12: duplicate category id" in r.output


def test_check_missing_file(tmp_path: Path):
    r = runner.invoke(constitution_app, ["check", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 1 and "nope.yaml: no such file" in r.output


def test_show_default_and_normalised(tmp_path: Path):
    r = runner.invoke(constitution_app, ["show"])
    assert r.exit_code == 0 and r.output == default_constitution_text()
    f = tmp_path / "c.yaml"
    f.write_text("# comment\n" + VALID)
    r = runner.invoke(constitution_app, ["show", "--path", str(f)])
    assert r.exit_code == 0 and "# comment" not in r.output
    assert parse_constitution(r.output) == parse_constitution(VALID)
