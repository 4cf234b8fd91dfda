"""Reported jailbreaks and the challenge's operator figures in the store, on SQLite and a
real PostgreSQL: reports added once per attempt, listed by status, resolved with the
bundle version that closed them; bad input refused with nothing changed; the reports
table added to a store written before it existed (its migration)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from swisscheese.store.challenge import Attempt, ChallengeStore
from swisscheese.store.engine import open_store
from swisscheese.store.reports import NewReport, ReportError, ReportStore
from swisscheese.store.schema import components


def test_reports_add_query_resolve(store_target: str) -> None:
    store = ReportStore(store_target)
    a, new_a = store.add(NewReport("admin", "Decode this and answer: ...", reporter="ops",
                                   response="Step 1: ...", note="seen in the logs"))
    b, new_b = store.add(NewReport("challenge", "A story prompt", reporter="player-1",
                                   level=3, hazard_id="h3", attempt_id=17, detail_score=0.6,
                                   bundle_version=1,
                                   conversation=[{"role": "user", "content": "A story prompt"}]))
    again, new_again = store.add(NewReport("challenge", "A story prompt", attempt_id=17))
    assert (new_a, new_b, new_again) == (True, True, False)
    assert again == b and b > a
    open_ = store.query(status="open")
    assert [r.id for r in open_] == [a, b]
    assert open_[0].response == "Step 1: ..." and open_[0].note == "seen in the logs"
    assert open_[1].conversation == [{"role": "user", "content": "A story prompt"}]
    assert open_[1].level == 3 and open_[1].attempt_id == 17 and open_[1].bundle_version == 1
    assert [r.id for r in store.query(after_id=a)] == [b]
    assert store.resolve([a], "patched", patched_version=2) == 1
    assert [r.id for r in store.query(status="open")] == [b]
    done = store.query(status="patched")[0]
    assert done.patched_version == 2 and done.resolved is not None
    assert store.counts() == {"open": 1, "patched": 1, "rejected": 0}
    store.close()


def test_bad_reports_and_ids_change_nothing(store_target: str) -> None:
    store = ReportStore(store_target)
    rid, _ = store.add(NewReport("admin", "p"))
    with pytest.raises(ReportError, match="prompt"):
        store.add(NewReport("admin", "   "))
    with pytest.raises(ReportError, match="source"):
        store.add(NewReport("email", "p"))
    with pytest.raises(ReportError, match="conversation"):
        store.add(NewReport("admin", "p", conversation=[{"role": "user"}]))
    with pytest.raises(ReportError, match=f"no report {rid + 5}"):
        store.resolve([rid, rid + 5], "patched", patched_version=2)
    with pytest.raises(ReportError, match="patched_version"):
        store.resolve([rid], "patched")
    with pytest.raises(ReportError, match="status"):
        store.query(status="closed")
    assert [(r.id, r.status) for r in store.query()] == [(rid, "open")]
    store.close()


def test_reports_table_joins_a_store_written_before_it(store_target: str) -> None:
    # A challenge store of the earlier release: its own component only.
    engine = open_store(store_target, components("challenge"))
    assert "jailbreak_reports" not in inspect(engine).get_table_names()
    engine.dispose()
    store = ReportStore(store_target)
    assert "jailbreak_reports" in inspect(store.engine).get_table_names()
    assert store.add(NewReport("admin", "p"))[1]
    store.close()


def test_operator_stats(store_target: str) -> None:
    store = ChallengeStore(store_target)

    def attempt(player: str, level: int, passed: bool, created: str,
                template: str = "t") -> Attempt:
        return Attempt(player=player, level=level, hazard_id=f"h{level}", prompt="p",
                       template=template, template_hash=template, reply="r",
                       detail_score=0.9 if passed else 0.1, threshold=0.5, passed=passed,
                       blocked_layer=None, bundle_version=1, created=created)

    store.record(attempt("p1", 1, False, "2026-01-01T00:00:00.000+00:00"))
    store.record(attempt("p2", 1, False, "2026-01-01T00:00:10.000+00:00"))
    store.record(attempt("p2", 1, True, "2026-01-01T00:01:40.000+00:00"))
    store.record(attempt("p1", 1, True, "2026-01-01T00:02:00.000+00:00"))
    store.record(attempt("p1", 2, False, "2026-01-01T00:03:00.000+00:00"))
    s = store.operator_stats([1, 2, 3])
    assert (s["players"], s["attempts"], s["passes"]) == (2, 5, 2)
    one, two, three = s["levels"]
    assert (one["attempts"], one["players"], one["passes"], one["players_passed"]) == (4, 2, 2, 2)
    assert one["attempts_before_first_pass"] == 2
    assert one["seconds_to_first_pass"] == 100.0
    assert (two["attempts"], two["passes"], two["first_pass"]) == (1, 0, None)
    assert two["seconds_to_first_pass"] is None
    assert three["attempts"] == 0 and three["best_score"] is None
    rec = store.attempt(3)
    assert rec is not None and rec[1] == 3 and rec[0].passed
    assert store.attempt(99) is None
    store.close()
