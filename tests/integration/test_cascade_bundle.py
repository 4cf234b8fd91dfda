"""A guard bundle of cascades trained by the organism recipe, in the guard, `classify` and
the store: every decision says which stage made it, and a stage 2 that is down blocks the
exchanges it was asked about (fail closed) while the rest of the traffic flows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swisscheese.bundles import GuardBundle, load_bundle
from swisscheese.bundles.classify import classify_file
from swisscheese.classifiers.backends.cascade import CascadeClassifier
from swisscheese.guard.pipeline import Guard
from swisscheese.store.decisions import (
    DecisionRecord,
    insert_decision,
    open_gateway_store,
    query_decisions,
)

BENIGN = "What is the capital of Sougrus?"
FAST = {"stage2": "ngram", "stage2_params": {"char_ngrams": (1, 3)}}
FAST_STREAM = {"stage2": "ngram-stream", "stage2_params": {"char_ngrams": (1, 3)}}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from swisscheese.recipes.organism.train import TrainConfig, train_bundle

    cfg = TrainConfig(n_per_category=60, augment=1, backend="cascade",
                      output_backend="cascade-stream", input_params=FAST,
                      output_params=FAST_STREAM)
    # Caesar held out as in the session's small bundle (tests/conftest.py): at this size
    # Caesar-shifted harmless crafts in the val split set the threshold above most requests.
    return train_bundle(tmp_path_factory.mktemp("cascade") / "run",
                        heldout=("morse", "caesar"), config=cfg)


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> GuardBundle:
    return load_bundle(bundle_dir)


def run(guard: Guard, conversation: list[dict[str, str]], reply: str) -> tuple[str, object]:
    session = guard.session(conversation)
    out = ""
    if session.check_input():
        for i in range(0, len(reply), 4):
            out += session.push(reply[i:i + 4])
        out += session.finish()
    return out, session.decision


def test_the_bundle_holds_cascades_with_an_escalation_threshold(bundle: GuardBundle) -> None:
    assert isinstance(bundle.input, CascadeClassifier)
    assert bundle.output.name == "cascade-stream" and bundle.output_kind == "exchange"
    for clf in (bundle.input, bundle.output):
        assert 0.0 <= clf.escalate_at <= 1.0  # type: ignore[attr-defined]
        assert 0.0 <= clf.escalation_rate < 1.0  # type: ignore[attr-defined]


def test_decisions_say_which_stage_decided(bundle: GuardBundle, world) -> None:  # type: ignore[no-untyped-def]
    h = world.seen_hazards[0]
    requests = [world.hazard_request(x, p) for x in world.seen_hazards for p in range(4)]
    decisions = [run(Guard(bundle), [{"role": "user", "content": r}], "")[1]
                 for r in requests]
    blocked = [d for d in decisions if d.blocked]
    assert len(blocked) > len(requests) // 2, "the cascade should stop most plain requests"
    # Only stage 2 can flag: stage 1's scores of what it clears sit below any threshold.
    assert all(d.layer == "input" and d.stages["input"] == 2 for d in blocked)
    _, d = run(Guard(bundle, input_layer=False), [{"role": "user", "content": BENIGN}],
               h.answer())
    assert d.blocked and d.layer == "output" and d.stages == {"output": 2}
    text, d = run(Guard(bundle), [{"role": "user", "content": BENIGN}], "Sougrus is far.")
    assert not d.blocked and text == "Sougrus is far."
    assert set(d.stages) == {"input", "output"} and set(d.stages.values()) <= {1, 2}


def test_a_stage_two_that_is_down_fails_closed_for_what_escalates(bundle: GuardBundle,
                                                                 world) -> None:  # type: ignore[no-untyped-def]
    import copy

    broken = copy.deepcopy(bundle)

    def down(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ConnectionError("stage 2 endpoint refused the connection")

    broken.output.stage2.start = down  # type: ignore[attr-defined]
    guard = Guard(broken, input_layer=False)
    conv = [{"role": "user", "content": BENIGN}]
    _, d = run(guard, conv, world.seen_hazards[0].answer())
    assert d.blocked and d.layer == "error" and "stage 2 endpoint" in d.error
    # Replies stage 1 clears never reach stage 2, so they flow as before.
    passed = [run(guard, conv, r) for r in ("Sougrus is far.", "Five.", "It is sunny.")]
    cleared = [(t, d) for t, d in passed if d.stages == {"output": 1}]
    assert cleared, "stage 1 should clear at least one short benign reply"
    assert all(not d.blocked and t for t, d in cleared)


def test_classify_and_the_store_keep_the_stages(bundle_dir: Path, bundle: GuardBundle,  # type: ignore[no-untyped-def]
                                                world, tmp_path: Path) -> None:
    h = world.seen_hazards[0]
    requests = [world.hazard_request(x, p) for x in world.seen_hazards for p in range(4)]
    flagged = next(r for r in requests if bundle.flag_input(bundle.input_scores([r])[0]))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": flagged}) + "\n"
                   + json.dumps({"prompt": BENIGN, "response": h.answer()}) + "\n")
    classify_file(bundle_dir, src, tmp_path / "out.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["stages"] == {"input": 2} and rows[0]["flagged"] is True
    assert rows[1]["stages"]["output"] == 2 and rows[1]["flagged"] is True
    engine = open_gateway_store(tmp_path / "store.db")
    insert_decision(engine, DecisionRecord(id="d1", endpoint="chat", conversation=[],
                                           stages={"input": 1, "output": 2}))
    assert query_decisions(engine)[0]["stages"] == {"input": 1, "output": 2}


def test_an_llm_judge_stage_two_behind_a_url_fails_closed_when_down(
        tmp_path_factory: pytest.TempPathFactory, world) -> None:  # type: ignore[no-untyped-def]
    """Stage 2 an LLM judge on a real loopback endpoint: it rates only what stage 1
    escalates; once the endpoint is down, an escalated request is blocked as an error
    (recorded in the decision) while requests stage 1 clears flow as before."""
    from swisscheese.recipes.organism.train import TrainConfig, train_bundle
    from tests.judge_server import JudgeServer

    with JudgeServer() as server:
        cfg = TrainConfig(n_per_category=40, augment=1, backend="cascade",
                          output_backend="ngram-stream",
                          input_params={"stage2": "llm-judge",
                                        "stage2_params": {"base_url": server.url,
                                                          "timeout": 2.0}})
        d = train_bundle(tmp_path_factory.mktemp("llm") / "run", heldout=("morse",),
                         config=cfg)
        bundle = load_bundle(d)
        assert bundle.input.stage2.name == "llm-judge"  # type: ignore[attr-defined]
        asked = len(server.texts)
        request = world.hazard_request(world.seen_hazards[0], 0)
        _, d1 = run(Guard(bundle, output_layer=False), [{"role": "user", "content": request}],
                    "")
        assert d1.stages == {"input": 2} and d1.blocked and d1.layer == "input"
        assert server.texts[asked:] == [request]  # one call, for the escalated text only
        benign = [f"What is {a} plus {b}?" for a in range(3) for b in range(3)]
        cleared = [t for t in benign if bundle.input_stages([t])[1][0] == 1]  # type: ignore[index]
        assert cleared, "stage 1 should clear some arithmetic"
    # The endpoint is down now.
    _, d2 = run(Guard(bundle, output_layer=False), [{"role": "user", "content": request}], "")
    assert d2.blocked and d2.layer == "error" and "input layer" in d2.error
    assert "127.0.0.1" in d2.error  # the error names the endpoint
    for t in cleared:
        text, d3 = run(Guard(bundle), [{"role": "user", "content": t}], "It is small.")
        assert not d3.blocked and d3.stages["input"] == 1 and text == "It is small."
