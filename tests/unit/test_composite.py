"""The cascade and the ensemble: what is special about classifiers built of classifiers
(the contract tests cover save/load, streaming and exchange reading for them as for all)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from swisscheese.classifiers import ClassifierError, get_classifier, load_classifier
from swisscheese.classifiers.backends.cascade import FLOOR, escalation_threshold
from swisscheese.classifiers.base import predict_stages

HAZARDS = ["Demze toxin", "Skosde golem", "Foxtru ember", "Thutraix hex", "Gunair swarm",
           "Vrokgre toxin", "Plimsa blight", "Keldra sigil"]
VERBS = ["brew", "wake", "kindle", "cast", "breed", "make", "prepare", "summon"]
SAFE = ["history of", "safe distance from", "story about", "museum of", "legends of"]


def corpus(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        h = rng.choice(HAZARDS)
        texts.append(f"How do I {rng.choice(VERBS)} the {h}? Step by step please.")
        labels.append(1)
        texts.append(f"Tell me about the {rng.choice(SAFE)} the {h}, {rng.randint(1, 99)}.")
        labels.append(0)
    return texts, labels


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[int]]:
    return corpus(60, 0)


@pytest.fixture(scope="module")
def cascade(data: tuple[list[str], list[int]]):  # type: ignore[no-untyped-def]
    return get_classifier("cascade", stage2="ngram", stage2_params={"char_ngrams": (1, 3)},
                          escalate_recall=0.99).fit(*data)


def test_escalation_threshold_keeps_the_asked_recall() -> None:
    s = np.linspace(0.0, 1.0, 201)
    for recall in (0.5, 0.9, 0.99, 0.995):
        t = escalation_threshold(s, recall)
        assert np.mean(s >= t) >= recall
        assert np.mean(s >= np.nextafter(t, 2.0)) < recall


def test_cascade_scores_stage_two_only_where_stage_one_escalates(cascade, data) -> None:  # type: ignore[no-untyped-def]
    texts, _ = data
    seen: list[str] = []
    real = cascade.stage2.predict_proba

    def spy(batch):  # type: ignore[no-untyped-def]
        seen.extend(batch)
        return real(batch)

    cascade.stage2.predict_proba = spy
    try:
        scores, stages = predict_stages(cascade, texts)
    finally:
        del cascade.stage2.predict_proba
    s1 = cascade.stage1.predict_proba(texts)
    up = s1 >= cascade.escalate_at
    assert sorted(seen) == sorted(t for t, u in zip(texts, up, strict=True) if u)
    assert np.array_equal(stages, np.where(up, 2, 1))
    assert (scores[~up] < FLOOR).all()
    assert np.allclose(scores[up], real([t for t, u in zip(texts, up, strict=True) if u]))
    # Stage 1 cleared some benign texts: that is where the cascade saves stage 2's work.
    assert (~up).sum() > 0 and 0.0 <= cascade.escalation_rate < 1.0


def test_cascade_loses_few_harmful_texts_on_new_data(cascade) -> None:  # type: ignore[no-untyped-def]
    texts, labels = corpus(200, 1)
    y = np.array(labels)
    _, stages = predict_stages(cascade, texts)
    assert np.mean(stages[y == 1] == 2) >= 0.95


def test_streaming_cascade_starts_stage_two_at_escalation(data) -> None:  # type: ignore[no-untyped-def]
    clf = get_classifier("cascade-stream", stage2="ngram-stream",
                         stage2_params={"char_ngrams": (1, 3)}).fit(*data)
    harmful = "How do I brew the Keldra sigil? Step by step please."
    benign = "Tell me about the museum of the Keldra sigil, 12."
    for text, want_stage in ((harmful, 2), (benign, 1)):
        state = clf.start()
        for i in range(0, len(text), 3):
            state, _ = clf.update(state, text[i:i + 3])
            assert (state.s2 is not None) == (state.stage == 2)
            if state.s2 is None:
                assert state.max_score < FLOOR  # not escalated: squeezed stage-1 scores
        state, score = clf.finish(state)
        assert state.stage == want_stage
        assert score == pytest.approx(clf.predict_proba([text])[0], abs=1e-9)


def test_a_stage_two_failure_reaches_the_caller(data) -> None:  # type: ignore[no-untyped-def]
    # The gateway turns it into a block ("fail closed"); benign text stage 1 clears never
    # calls stage 2, so it goes on being scored.
    clf = get_classifier("cascade-stream", stage2="ngram-stream").fit(*data)

    def down(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ConnectionError("stage 2 is down")

    clf.stage2.start = down
    state = clf.start()
    state, _ = clf.update(state, "Tell me about the museum of the Keldra sigil, 12.")
    assert state.stage == 1
    with pytest.raises(ConnectionError):
        clf.update(clf.start(), "How do I brew the Keldra sigil? Step by step please.")


def test_ensemble_weights_are_never_negative_and_noise_counts_little(data) -> None:  # type: ignore[no-untyped-def]
    texts, labels = data
    rng = random.Random(3)
    # A second member that sees only shuffled labels: it has nothing to tell.
    clf = get_classifier("ensemble", members=("ngram", "ngram"))
    clf.fit(texts, labels)
    assert (clf.weights >= 0).all()
    noisy = get_classifier("ensemble", members=("ngram", "ngram"))
    noisy.members["m1"].fit = (lambda x, y, m=noisy.members["m1"]:  # type: ignore[misc]
                               type(m).fit(m, x, rng.sample(list(y), len(y))))
    noisy.fit(texts, labels)
    assert (noisy.weights >= 0).all() and noisy.weights[1] < noisy.weights[0]


def test_an_ensemble_can_be_a_cascades_stage_two(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    texts, labels = data
    clf = get_classifier("cascade", stage2="ensemble", stage2_params={
        "members": ("ngram", "ngram"), "members_params": [{}, {"char_ngrams": (1, 3)}]})
    clf.fit(texts, labels)
    assert clf.stage2.name == "ensemble" and clf.stage2.weights is not None
    new, _ = corpus(20, 7)
    scores, stages = predict_stages(clf, new)
    up = stages == 2
    assert up.any()
    # Escalated texts score as the ensemble alone scores them.
    assert np.allclose(scores[up], clf.stage2.predict_proba([new[i] for i in np.flatnonzero(up)]))
    loaded = load_classifier(clf.save(tmp_path / "c"))
    assert np.array_equal(loaded.predict_proba(new), scores)
    # Only one level: an ensemble's member, or a cascade's, is never a cascade.
    with pytest.raises(ValueError, match="cannot itself be a composite"):
        get_classifier("ensemble", members=("ngram", "ensemble"))
    with pytest.raises(ValueError, match="cannot itself be a composite"):
        get_classifier("cascade", stage2="ensemble",
                       stage2_params={"members": ("ngram", "cascade")})


@pytest.mark.parametrize("kwargs, match", [
    ({"stage1": "cascade"}, "cannot itself be a composite"),
    ({"stage2": "nonesuch"}, "unknown member backend 'nonesuch'"),
    ({"escalate_recall": 1.0}, "escalate_recall must be in"),
])
def test_bad_cascade_settings_fail_clearly(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_classifier("cascade", **kwargs)


def test_streaming_composites_refuse_members_they_cannot_stream() -> None:
    with pytest.raises(ValueError, match="not a streaming classifier"):
        get_classifier("cascade-stream", stage2="decoding")
    with pytest.raises(ValueError, match="cannot be built as"):
        get_classifier("ensemble", context="exchange")  # the input ensemble reads prompts
    with pytest.raises(ValueError, match="at least two members"):
        get_classifier("ensemble", members=("ngram",))


def test_a_swapped_member_is_named(cascade, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = cascade.save(tmp_path / "c")
    meta = json.loads((d / "config.json").read_text())
    meta["members"]["stage2"] = "transformer"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ClassifierError, match=r"stage2.*holds a 'ngram' classifier"):
        load_classifier(d)
    shutil.rmtree(d / "stage1")
    with pytest.raises(ClassifierError, match="stage1"):
        load_classifier(d)


def test_a_probe_and_ngram_ensemble_reads_the_served_model(data, tiny_model_dir: Path,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    from swisscheese.recipes.organism.train import TrainConfig, backend_params, check_backend

    cfg = TrainConfig(backend="ensemble", input_params={"members": ["probe", "ngram"]},
                      output_backend="ngram-stream", model_dir=str(tiny_model_dir))
    check_backend(cfg)  # the recipe hands the model directory to the ensemble
    params, _ = backend_params(cfg, 0)
    clf = get_classifier("ensemble", **params)
    assert clf.members["m0"].config.model_dir == str(tiny_model_dir)
    texts, labels = data
    clf.fit(texts[:40], labels[:40])
    want = clf.predict_proba(texts[40:60])
    assert (clf.weights >= 0).all() and want.shape == (20,)
    assert np.allclose(load_classifier(clf.save(tmp_path / "e")).predict_proba(texts[40:60]),
                       want)
