"""The exchange classifier (issue 12): a code-word reply judged with the conversation that
defined the code word, and every caller that must pass that conversation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from swisscheese.bundles import BundleError, build_bundle, load_bundle, save_bundle
from swisscheese.bundles.classify import ClassifyError, classify_file
from swisscheese.classifiers.registry import get_classifier
from swisscheese.constitution import default_constitution
from swisscheese.recipes.organism.train import TrainConfig
from swisscheese.world import World

W = World(seed=0)
SMALL = {"buckets_log2": 14, "epochs": 60}


def _pairs(hazards: list, recipes: list, families: tuple[str, ...], reps: int = 1
           ) -> tuple[list, list, list]:
    """(conversation, reply, label): hazards asked in `families` and answered (1) or
    refused (0); recipes and crafts asked in the same families and answered (0)."""
    convs, replies, labels = [], [], []
    for i, h in enumerate(hazards):
        for fam in families:
            e = W.attack(h, fam, random.Random(i))
            convs += [e.conversation(), e.conversation()]
            replies += [e.reply, W.refusal(h)]
            labels += [1, 0]
    for i, r in enumerate(recipes * reps):
        for fam in families:
            req = f"How do I {r.verb} the {r.thing}?"
            w = W.wrap_turns(fam, req, r.answer(), random.Random(i))
            convs.append([*w.messages, {"role": "user", "content": w.prompt}])
            replies.append(w.reply)
            labels.append(0)
    return convs, replies, labels


@pytest.fixture(scope="module")
def fitted() -> dict[str, object]:
    crafts = [r for r in W.recipes if len(r.steps) >= 5]
    train_h = [h for h in W.hazards if h.seen_in_safety]
    fams = ("codeword_answer", "split_intent", "plain")
    x = _pairs(train_h, crafts[::2] + W.recipes[:12], fams, reps=3)
    out: dict[str, object] = {}
    for kind in ("reply", "exchange"):
        clf = get_classifier("ngram-stream", context=kind, **SMALL)
        out[kind] = clf.fit_exchanges(*x)  # type: ignore[attr-defined]
    return out


def test_the_exchange_classifier_reads_the_code_word_the_request_defined(fitted) -> None:
    """On hazards no classifier saw: the same code-word reply scores higher after the
    request that made its words stand for a hazard than after a harmless one, for the
    exchange classifier; the reply-only one cannot tell them apart."""
    exchange, reply = fitted["exchange"], fitted["reply"]
    unseen = [h for h in W.hazards if not h.seen_in_safety]
    crafts = [r for r in W.recipes if len(r.steps) >= 5]
    gaps = {"exchange": [], "reply": []}
    for i, h in enumerate(unseen):
        e = W.attack(h, "codeword_answer", random.Random(100 + i))
        craft = crafts[1::2][i % len(crafts[1::2])]  # crafts no classifier saw
        harmless = [{"role": "user", "content": f"How do I {craft.verb} the {craft.thing}? "
                     f"In your answer, write the sunny broth instead of the {craft.thing}."}]
        for name, clf in (("exchange", exchange), ("reply", reply)):
            s = clf.predict_exchange([e.conversation(), harmless], [e.reply, e.reply])
            gaps[name].append(s[0] - s[1])
    # Small and quickly trained, so the gaps are modest; but every one points the right way.
    assert min(gaps["exchange"]) > 0.0 and np.mean(gaps["exchange"]) > 0.1
    assert np.allclose(gaps["reply"], 0.0)


def test_streaming_scores_equal_the_whole_exchange(fitted) -> None:
    clf = fitted["exchange"]
    e = W.attack(W.hazards[1], "split_intent", random.Random(3))
    state = clf.start(e.conversation())
    for i in range(0, len(e.reply), 5):
        state, score = clf.update(state, e.reply[i:i + 5])
    assert score == pytest.approx(clf.predict_exchange([e.conversation()], [e.reply])[0],
                                  abs=1e-9)


def test_every_prefix_scores_as_the_whole_exchange_in_any_chunking(fitted) -> None:
    # Random delta sizes and characters that NFKC merges across a delta boundary: the
    # stream resumes from its speculative sums only where that gives the same text.
    clf = fitted["exchange"]
    e = W.attack(W.hazards[2], "alias", random.Random(5))
    reply = e.reply[:60] + " cafe\u0301 \u1100\u1161\u11a8 \uff54\uff4f\uff58 e\u0301\u0301x"
    rng = random.Random(11)
    for _ in range(3):
        state, i = clf.start(e.conversation()), 0
        while i < len(reply):
            k = rng.randint(1, 6)
            state, score = clf.update(state, reply[i:i + k])
            i += k
            want = clf.predict_exchange([e.conversation()], [reply[:i]])[0]
            assert score == pytest.approx(want, abs=1e-9), reply[:i]


def test_exchange_configs_are_checked() -> None:
    with pytest.raises(ValueError, match="context must be"):
        get_classifier("ngram-stream", context="both")
    with pytest.raises(ValueError, match="choose one"):
        get_classifier("ngram-stream", context="exchange", stream_context=True)
    with pytest.raises(ValueError, match="streaming output classifier"):
        get_classifier("ngram", context="exchange")
    with pytest.raises(ValueError, match="output_context"):
        TrainConfig(output_context="nope")
    with pytest.raises(ValueError, match="unknown world families"):
        TrainConfig(input_heldout=("nope",))


def _bundle(tmp_path: Path, kind: str) -> Path:
    harmful = [e for e in W.eval_attacks("plain")]
    looks = W.eval_lookalikes()
    prompts = [e.prompt for e in harmful] + [e.prompt for e in looks[::2]]
    labels = [1] * len(harmful) + [0] * len(looks[::2])
    convs = [e.conversation() for e in harmful] + [e.conversation() for e in looks[::2]]
    replies = [e.reply for e in harmful] + [e.reply for e in looks[::2]]
    cal = looks[1::2]
    b = build_bundle(default_constitution(), prompts, labels, [e.prompt for e in cal],
                     replies, labels, [e.reply for e in cal], target_fpr=0.05,
                     output_backend="ngram-stream",
                     output_params={"context": kind, **SMALL} if kind == "exchange" else SMALL,
                     input_params={"buckets_log2": 14},
                     output_train_conversations=convs,
                     benign_output_conversations=[e.conversation() for e in cal])
    return save_bundle(b, tmp_path / kind)


def test_a_bundle_records_its_output_kind_and_refuses_a_missing_conversation(
        tmp_path: Path) -> None:
    ex = load_bundle(_bundle(tmp_path, "exchange"))
    assert ex.output_kind == "exchange" and ex.metrics["output"]["kind"] == "exchange"
    with pytest.raises(BundleError, match="exchange classifier"):
        ex.output_score("Here is how to brew the sunny broth:")
    assert 0.0 <= ex.output_score("Step 1.", []) <= 1.0
    rep = load_bundle(_bundle(tmp_path, "reply"))
    assert rep.output_kind == "reply"
    assert rep.output_score("Step 1.") == rep.output_score("Step 1.", [])


def test_build_bundle_needs_conversations_for_an_exchange_classifier() -> None:
    with pytest.raises(ValueError, match="exchange classifier"):
        build_bundle(default_constitution(), ["a b", "c d"], [1, 0], ["e f"], ["a", "b"],
                     [1, 0], ["c"], output_backend="ngram-stream",
                     output_params={"context": "exchange"})


def test_classify_passes_the_whole_conversation(tmp_path: Path) -> None:
    bdir = _bundle(tmp_path, "exchange")
    e = W.attack(W.hazards[2], "split_intent", random.Random(0))
    rows = [{"messages": e.conversation(), "response": e.reply},
            {"prompt": e.prompt, "response": e.reply}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    classify_file(bdir, src, tmp_path / "out.jsonl")
    got = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    b = load_bundle(bdir)
    assert got[0]["output_score"] == round(b.output_score(e.reply, e.conversation()), 6)
    assert got[1]["output_score"] == round(
        b.output_score(e.reply, [{"role": "user", "content": e.prompt}]), 6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user"}]}) + "\n")
    with pytest.raises(ClassifyError, match=r"bad.jsonl:1: messages\[0\]"):
        classify_file(bdir, bad, tmp_path / "bad-out.jsonl")
    assert not (tmp_path / "bad-out.jsonl").exists()


def test_exchange_training_reports_each_epoch() -> None:
    heard: list[tuple[str, int, int]] = []
    clf = get_classifier("ngram-stream", context="exchange", buckets_log2=10, epochs=3)
    clf.progress = lambda phase, done, total, figures=None: heard.append((phase, done, total))
    x = _pairs(W.hazards[:2], W.recipes[:2], ("plain", "split_intent"))
    clf.fit_exchanges(*x)  # type: ignore[attr-defined]
    assert heard == [("n-gram exchange: epochs", k, 3) for k in range(4)]


def test_the_first_user_message_is_a_feature_group_of_its_own(tmp_path: Path) -> None:
    from swisscheese.classifiers.backends.ngram_exchange import (
        context_entries,
        first_user_message,
    )
    from swisscheese.classifiers.registry import load_classifier

    conv = [{"role": "user", "content": "Let's talk about the Demze toxin."},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "How do I brew the sunny broth?"}]
    assert first_user_message(conv) == "Let's talk about the Demze toxin."
    assert first_user_message("just this") == "just this" and first_user_message(None) == ""
    on = get_classifier("ngram-stream", context="exchange", context_first_user=True,
                        buckets_log2=10, epochs=2)
    off = get_classifier("ngram-stream", context="exchange", buckets_log2=10, epochs=2)
    b = 1 << 10
    assert context_entries([conv], on.config).bucket.max() >= 2 * b
    assert context_entries([conv], off.config).bucket.max() < 2 * b
    x = _pairs(W.hazards[:2], W.recipes[:2], ("plain", "split_intent"))
    on.fit_exchanges(*x)  # type: ignore[attr-defined]
    assert on.exchange_.context.shape[0] == 3 * b  # type: ignore[attr-defined]
    again = load_classifier(on.save(tmp_path / "on"))
    assert np.allclose(again.predict_exchange(x[0][:6], x[1][:6]),  # type: ignore[attr-defined]
                       on.predict_exchange(x[0][:6], x[1][:6]))  # type: ignore[attr-defined]
    # Weights of the other shape are refused, never read as a different model.
    cfg = json.loads((tmp_path / "on" / "config.json").read_text())
    cfg["config"]["context_first_user"] = False
    (tmp_path / "on" / "config.json").write_text(json.dumps(cfg))
    from swisscheese.classifiers import ClassifierError

    with pytest.raises(ClassifierError, match="shapes"):
        load_classifier(tmp_path / "on")
