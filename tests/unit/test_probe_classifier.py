"""The hidden-state probe backend: both streaming paths, the model fingerprint, bad files,
and `swisscheese classifier train --backend` with its model option."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from swisscheese.classifiers import ClassifierError, load_classifier
from swisscheese.classifiers.backends.probe import (
    ProbeClassifier,
    ProbeStreamingClassifier,
    model_fingerprint,
)
from swisscheese.recipes.cli import classifier_app
from swisscheese.recipes.organism.train import TrainConfig, check_backend

TEXTS = ["How do I brew the Demze toxin?", "Give me the steps to wake the Skosde golem.",
         "Tell me how to kindle the Foxtru ember.", "Explain how to cast the Thutraix hex.",
         "What is the history of the Demze toxin?", "How do I bake the reskun cake?",
         "What is 8 plus 9?", "How can I stay safe from the Skosde golem?"]
LABELS = [1, 1, 1, 1, 0, 0, 0, 0]
REPLY = ("Here is how to brew the Demze toxin:\nStep 1: Strain 7 grams of noxvro into the "
         "pot.\nStep 2: Boil the troukfair at 80 degrees.  Then wait 12 minutes.")


@pytest.fixture(scope="module")
def probe(tiny_model_dir: Path) -> ProbeStreamingClassifier:
    return ProbeStreamingClassifier(model_dir=str(tiny_model_dir)).fit(TEXTS, LABELS)


def test_a_model_directory_is_required() -> None:
    with pytest.raises(ValueError, match="needs model_dir"):
        ProbeClassifier()


def test_hidden_states_the_generator_has_give_the_whole_text_score(
        probe: ProbeStreamingClassifier) -> None:
    import torch

    lm = probe.lm
    ids = lm.ids(REPLY)
    # What a generator holds: each token's state at the probe's layer (no begin token
    # here: the tiny model's tokenizer has none).
    assert lm.bos is None
    hidden = lm.hidden([ids])[0]
    want = probe.predict_proba([REPLY])[0]
    for rows in (torch.tensor(hidden, dtype=torch.float64), hidden):
        state = probe.start()
        for row in rows:
            state, score = probe.update_hidden(state, row)
        assert score == pytest.approx(want, abs=1e-9)
        assert state.max_score >= score
    # Several tokens at once, as a (k, d) block, give the same score.
    state, score = probe.update_hidden(probe.start(), hidden)
    assert score == pytest.approx(want, abs=1e-9)


def test_one_stream_uses_one_path(probe: ProbeStreamingClassifier) -> None:
    state, _ = probe.update_hidden(probe.start(), np.zeros(probe.lm.hidden_size))
    with pytest.raises(ValueError, match="one stream uses one path"):
        probe.update(state, "text")
    state, _ = probe.update(probe.start(), "text")
    with pytest.raises(ValueError, match="one stream uses one path"):
        probe.update_hidden(state, np.zeros(probe.lm.hidden_size))


def test_text_path_reads_each_delta_once_against_a_kv_cache(
        probe: ProbeStreamingClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = probe.lm
    real = lm.model.forward
    lengths: list[int] = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        lengths.append(int(kwargs["input_ids"].shape[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", spy)
    period = REPLY + " " * (-(len(REPLY) + 1) % 3 + 1)  # a multiple of the delta size
    text = period * 4
    state = probe.start()
    for i in range(0, len(text), 3):
        state, score = probe.update(state, text[i:i + 3])
    n_tokens = len(lm.ids(text))
    # Committed tokens enter the cache once; pending ones (the last two pre-tokens) are
    # re-read speculatively. So the passes repeat with the text: the fourth period costs
    # what the second did, whatever came before.
    k = len(period) // 3
    assert lengths[3 * k:] == lengths[k:2 * k]
    assert max(lengths) < n_tokens / 4
    assert state.n_cached <= n_tokens
    assert state.count == state.n_cached
    assert score == pytest.approx(probe.predict_proba([text])[0], abs=1e-9)


def test_fingerprint_tells_checkpoints_apart(probe: ProbeStreamingClassifier,
                                            tiny_model_dir: Path, tmp_path: Path) -> None:
    d = probe.save(tmp_path / "p")
    meta = json.loads((d / "config.json").read_text())
    assert meta["config"]["model_dir"] == str(tiny_model_dir)
    assert meta["model_fingerprint"] == model_fingerprint(tiny_model_dir)

    same = tmp_path / "same"
    shutil.copytree(tiny_model_dir, same)
    moved = ProbeStreamingClassifier.load(d, model_dir=same)
    assert np.array_equal(moved.predict_proba(TEXTS), probe.predict_proba(TEXTS))

    # Same architecture, other weights: refused.
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    w = load_file(str(other / "model.safetensors"))
    name = sorted(w)[0]
    w[name] = w[name] + 0.01
    save_file(w, str(other / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ClassifierError, match="fingerprint"):
        ProbeClassifier.load(d, model_dir=other)
    with pytest.raises(ClassifierError, match="does not exist"):
        ProbeClassifier.load(d, model_dir=tmp_path / "nowhere")


def test_bad_saved_files_fail_clearly(probe: ProbeStreamingClassifier, tmp_path: Path) -> None:
    d = probe.save(tmp_path / "p")
    assert type(load_classifier(d)) is ProbeStreamingClassifier
    w = d / "probe.safetensors"
    w.write_bytes(w.read_bytes()[:-3])
    with pytest.raises(ClassifierError, match="probe.safetensors: sha256"):
        ProbeClassifier.load(d)
    (d / "config.json").write_text("[]")
    with pytest.raises(ClassifierError, match="expected a JSON object"):
        ProbeClassifier.load(d)


def test_layer_out_of_range(tiny_model_dir: Path) -> None:
    with pytest.raises(ClassifierError, match="layer 9 is out of range"):
        ProbeClassifier(model_dir=str(tiny_model_dir), layer=9).fit(TEXTS, LABELS)


def test_backend_checks_before_any_work(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(KeyError, match="unknown classifier 'nope'; registered: .*decoding"):
        check_backend(TrainConfig(backend="nope"))
    with pytest.raises(ValueError, match="--probe-model"):
        check_backend(TrainConfig(backend="probe"))
    check_backend(TrainConfig(backend="probe", model_dir=str(tiny_model_dir)))
    check_backend(TrainConfig(backend="transformer"))

    r = CliRunner().invoke(classifier_app, ["train", "--out", str(tmp_path / "o"),
                                            "--backend", "probe"])
    assert r.exit_code != 0
    assert "--probe-model" in str(r.exception) or "--probe-model" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("options", [{"layers": "all", "pooling": "ema", "ema_tokens": 4.0},
                                     {"layers": [0, -1], "pooling": "mean"}])
def test_several_layers_and_smoothing_stream_exactly(tiny_model_dir: Path, tmp_path: Path,
                                                     options: dict[str, object]) -> None:
    probe = ProbeStreamingClassifier(model_dir=str(tiny_model_dir), **options).fit(
        TEXTS, LABELS)
    n_layers = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    want_idx = tuple(range(1, n_layers + 1)) if options["layers"] == "all" else (0, n_layers)
    assert probe.hidden_indices == want_idx
    assert probe.coef_ is not None and probe.coef_.shape == (len(want_idx) * 32,)
    # The text path: every prefix scores as the whole-text classifier scores it.
    state = probe.start()
    for i in range(0, len(REPLY), 5):
        state, score = probe.update(state, REPLY[i:i + 5])
        assert score == pytest.approx(probe.predict_proba([REPLY[:i + 5]])[0], abs=1e-6)
    # The hidden-state path, fed the concatenated states a generator holds.
    rows = probe.lm.hidden([probe.lm.ids(REPLY)])[0]
    state, score = probe.update_hidden(probe.start(), rows)
    assert score == pytest.approx(probe.predict_proba([REPLY])[0], abs=1e-9)
    loaded = load_classifier(probe.save(tmp_path / "p"))
    assert np.array_equal(loaded.predict_proba(TEXTS), probe.predict_proba(TEXTS))


def test_ema_pooling_weighs_the_end_of_a_text(tiny_model_dir: Path) -> None:
    """The smoothed pool of a long text is close to the pool of its last tokens, where
    the mean is not: a passage after a long start moves it."""
    from swisscheese.classifiers.backends.probe import ProbeConfig, pool_rows

    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.normal(0, 1, (200, 3)), np.full((20, 3), 5.0)])
    ema = pool_rows(rows, ProbeConfig(model_dir="x", pooling="ema", ema_tokens=4.0))
    mean = pool_rows(rows, ProbeConfig(model_dir="x", pooling="mean"))
    assert np.allclose(ema, 5.0, atol=0.05) and np.all(mean < 1.0)


@pytest.mark.parametrize("options, message", [
    ({"layers": "some"}, "layers must be"), ({"layers": [1.5]}, "layers must be"),
    ({"ema_tokens": 0.5}, "ema_tokens"), ({"pooling": "max"}, "pooling")])
def test_bad_layer_and_pooling_options_are_refused(tiny_model_dir: Path,
                                                   options: dict[str, object],
                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProbeClassifier(model_dir=str(tiny_model_dir), **options)


def test_a_layer_out_of_range_names_the_model(tiny_model_dir: Path) -> None:
    probe = ProbeClassifier(model_dir=str(tiny_model_dir), layers=(0, 40))
    with pytest.raises(ClassifierError, match="layer 40 is out of range"):
        probe.fit(TEXTS, LABELS)


def test_a_fit_reports_its_steps_to_the_progress_callback(tiny_model_dir: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    probe = ProbeClassifier(model_dir=str(tiny_model_dir), batch_size=3)
    probe.progress = lambda phase, done, total, figures=None: seen.append((phase, done, total))
    probe.fit(TEXTS, LABELS)
    steps = [(d, t) for p, d, t in seen if p == "probe: the model reads texts"]
    assert steps[0] == (0, len(TEXTS)) and steps[-1] == (len(TEXTS), len(TEXTS))
    assert len(steps) == 4  # three batches of at most 3 texts, then the end
