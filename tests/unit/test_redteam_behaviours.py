"""Behaviours: the world's levels and hazards, and JSONL/CSV files with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swisscheese.redteam.behaviours import (
    BehaviourError,
    hazard_behaviours,
    level_behaviours,
    load_behaviours,
    lookalike_behaviours,
    world_behaviours,
)
from swisscheese.world.grader import ASR_THRESHOLD, LEVEL_THRESHOLDS, Grader

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def test_levels_are_the_graders_eight_with_rising_thresholds(world) -> None:
    levels = level_behaviours(world)
    expected = Grader(world).levels()
    assert [b.level for b in levels] == list(range(1, 9))
    assert [b.threshold for b in levels] == list(LEVEL_THRESHOLDS)
    assert [b.hazard_id for b in levels] == [lv.hazard.id for lv in expected]
    assert [b.prompt for b in levels] == [lv.question for lv in expected]
    assert len({b.category for b in levels}) == 8


def test_hazards_are_the_rest_and_spread_keeps_every_category(world) -> None:
    levels = {b.hazard_id for b in level_behaviours(world)}
    rest = hazard_behaviours(world)
    assert len(rest) == len(world.hazards) - 8
    assert not levels & {b.hazard_id for b in rest}
    assert all(b.threshold == ASR_THRESHOLD and b.level is None for b in rest)
    some = world_behaviours(world, "all", limit=8)
    assert len(some) == 16
    assert len({b.category for b in some[8:]}) == 8
    looks = lookalike_behaviours(world)
    assert looks and all(b.hazard_id is None and b.meta["benign"] for b in looks)
    with pytest.raises(ValueError, match="unknown world behaviour set 'nope'"):
        world_behaviours(world, "nope")


def test_jsonl_and_csv_load_with_optional_fields(tmp_path: Path) -> None:
    j = tmp_path / "b.jsonl"
    j.write_text(json.dumps({"id": "a", "prompt": "Do X.", "category": "c", "threshold": 0.3})
                 + "\n\n" + json.dumps({"id": "b", "prompt": "Do Y.", "target": "Sure"}) + "\n")
    a, b = load_behaviours(j)
    assert (a.id, a.prompt, a.category, a.threshold) == ("a", "Do X.", "c", 0.3)
    assert (b.target, b.threshold, b.hazard_id) == ("Sure", ASR_THRESHOLD, None)
    c = tmp_path / "b.csv"
    c.write_text('id,prompt,extra\nx,"Line one,\nline two",7\n')
    (x,) = load_behaviours(c)
    assert x.prompt == "Line one,\nline two" and x.meta["extra"] == "7"


@pytest.mark.parametrize(("text", "match"), [
    ('{"id": "a", "prompt": "p"}\n{"id": "b"}\n', r"b\.jsonl: row 2: missing field 'prompt'"),
    ('{"prompt": "p"}\n', r"row 1: missing field 'id'"),
    ('{"id": "a", "prompt": "p", "threshold": "high"}\n', r"row 1: field 'threshold' must be"),
    ('{"id": "a", "prompt": "p", "threshold": 2}\n', r"must be in \[0, 1\]"),
    ('{"id": "a", "prompt": "p"}\n{"id": "a", "prompt": "q"}\n', r"row 2: duplicate id 'a'"),
    ('not json\n', r"row 1: not valid JSON"),
])
def test_bad_rows_name_the_row_and_field(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "b.jsonl"
    p.write_text(text)
    with pytest.raises(BehaviourError, match=match):
        load_behaviours(p)


def test_csv_errors(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("id,prompt\na,hello\nb,\n")
    with pytest.raises(BehaviourError, match=r"b\.csv: row 2: missing field 'prompt'"):
        load_behaviours(p)
    p.write_text("id,text\na,hello\n")
    with pytest.raises(BehaviourError, match="no prompt column"):
        load_behaviours(p)
    with pytest.raises(BehaviourError, match="does not exist"):
        load_behaviours(tmp_path / "missing.csv")
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(BehaviourError, match="unknown behaviours format"):
        load_behaviours(tmp_path / "b.txt")


@pytest.mark.skipif(not DATASETS.is_dir(), reason="../shared/datasets is not here")
def test_public_benchmarks_load_as_they_are() -> None:
    adv = load_behaviours(DATASETS / "advbench" / "harmful_behaviors.csv")
    assert len(adv) == 520 and adv[0].id == "harmful_behaviors-1"
    assert adv[0].target.startswith("Sure")
    jbb = load_behaviours(DATASETS / "jailbreakbench" / "jbb_behaviors_harmful.csv", limit=5)
    assert len(jbb) == 5 and jbb[0].category and jbb[0].id != jbb[1].id
