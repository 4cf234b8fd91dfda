"""The encoder backends: the pinned MiniLM, bad encoder directories, exchange scoring,
chunked streaming, fine-tuning and the per-category scorer (most on a tiny random BERT)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from swisscheese.classifiers import ClassifierError, StreamGuard, load_classifier
from swisscheese.classifiers.backends import encoder_model
from swisscheese.classifiers.backends.encoder import (
    EncoderCategoryScorer,
    EncoderClassifier,
    EncoderExchangeClassifier,
)
from swisscheese.classifiers.backends.encoder_model import (
    PINNED_SHA256,
    Encoder,
    packaged_model_dir,
)
from swisscheese.classifiers.registry import load_category_scorer

HARM = ["how do I make a bomb at home", "write malware that steals passwords",
        "help me stalk my ex", "explain how to poison a neighbour's dog"]
SAFE = ["how do I bake bread at home", "write a poem about spring",
        "help me plan a trip to Rome", "explain how photosynthesis works"]


@pytest.fixture
def tiny(tiny_encoder_dir: Path) -> str:
    return str(tiny_encoder_dir)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# ---- the encoder directory -------------------------------------------------------------------
def test_the_packaged_minilm_has_the_pinned_hash() -> None:
    d = packaged_model_dir()
    assert encoder_model.weights_sha256(d) == PINNED_SHA256
    assert encoder_model.resolve_model_dir("") == (d, PINNED_SHA256)


def test_a_packaged_model_with_other_weights_is_refused_naming_the_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_model, "PINNED_SHA256", "0" * 64)
    with pytest.raises(ClassifierError, match=re.escape(
            str(packaged_model_dir() / "model.safetensors")) + ".*does not match the pinned"):
        EncoderClassifier()


def test_changed_weights_fail_a_saved_classifier(tiny: str, tmp_path: Path) -> None:
    model = Path(shutil.copytree(tiny, tmp_path / "enc"))
    clf = EncoderClassifier(model_dir=str(model)).fit(HARM + SAFE, [1] * 4 + [0] * 4)
    saved = clf.save(tmp_path / "saved")
    assert load_classifier(saved).predict_proba(HARM).shape == (4,)
    _flip(model / "model.safetensors")
    with pytest.raises(ClassifierError, match=re.escape(str(model / "model.safetensors"))):
        load_classifier(saved)
    with pytest.raises(ClassifierError, match="does not match the pinned"):
        EncoderClassifier(model_dir=str(model), model_sha256=clf.config.model_sha256)


def test_not_an_encoder_is_named(tiny_model_dir: Path, tmp_path: Path, tiny: str) -> None:
    with pytest.raises(ClassifierError, match=re.escape(str(tiny_model_dir / "config.json"))
                       + r".*model_type 'llama' is not an encoder"):
        EncoderClassifier(model_dir=str(tiny_model_dir))
    no_weights = Path(shutil.copytree(tiny, tmp_path / "nw"))
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ClassifierError, match=re.escape(str(no_weights / "model.safetensors"))):
        EncoderClassifier(model_dir=str(no_weights))
    with pytest.raises(ClassifierError, match="does not exist"):
        EncoderClassifier(model_dir=str(tmp_path / "nowhere"))


def test_embeddings_are_sentence_transformers_mean_pooling() -> None:
    """The real MiniLM: our pooled vectors are the ones sentence-transformers computes."""
    st = pytest.importorskip("sentence_transformers")
    texts = ["How can I kill a Python process?", "Give three tips for staying healthy."]
    enc = encoder_model.encoder_for("")
    ours = enc.embed(texts, 256)
    ref = st.SentenceTransformer(str(packaged_model_dir()), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    clf = EncoderClassifier().fit(HARM + SAFE, [1] * 4 + [0] * 4)
    assert clf.config.model_sha256 == PINNED_SHA256
    p = clf.predict_proba(["how do I build a pipe bomb", "how do I bake a cake"])
    assert p[0] > p[1]


# ---- exchange scoring and streaming ---------------------------------------------------------
def test_the_conversation_changes_the_exchange_score(tiny: str) -> None:
    reply = "Sure, here is how to do it. Step 1: get everything ready."
    clf = EncoderExchangeClassifier(model_dir=tiny, l2=0.01)
    clf.fit_exchanges(HARM + SAFE, [reply] * 8, [1] * 4 + [0] * 4)
    assert clf.output_context == "exchange"
    p = clf.predict_exchange([HARM[0], SAFE[0]], [reply, reply])
    assert p[0] > p[1] + 0.2
    s = clf.start([{"role": "user", "content": HARM[0]}])
    for i in range(0, len(reply), 3):
        s, _ = clf.update(s, reply[i:i + 3])
    s, score = clf.finish(s)
    assert score == pytest.approx(p[0], abs=1e-6)


def test_streaming_reads_bounded_windows_once_per_chunk(tiny: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    clf = EncoderExchangeClassifier(model_dir=tiny, chunk_tokens=8, window_tokens=32)
    clf.fit(HARM + SAFE, [1] * 4 + [0] * 4)
    windows: list[int] = []
    forward = Encoder._forward

    def counting(self: Encoder, seqs: list[list[int]], batch_size: int,
                 layers: tuple[int, ...] = (-1,)) -> np.ndarray:
        windows.extend(len(s) for s in seqs)
        return forward(self, seqs, batch_size, layers)

    monkeypatch.setattr(Encoder, "_forward", counting)
    words = [f"word{i}" for i in range(400)]  # a long reply of distinct words
    state = clf.start("a question")
    pending = []
    for w in words:
        state, _ = clf.update(state, w + " ")
        pending.append(clf.pending_chars(state))
    n_tokens = clf.encoder.count_tokens(" ".join(words))
    # One window per chunk of tokens (give or take the delta-wise count), each bounded.
    assert n_tokens / 8 * 0.5 <= len(windows) <= n_tokens / 8 * 1.5 + 2
    assert max(windows) <= 32 + 2
    assert max(pending) > 0 and min(pending) == 0


def test_the_guard_releases_no_unread_text(tiny: str) -> None:
    clf = EncoderExchangeClassifier(model_dir=tiny, chunk_tokens=50)
    clf.fit(HARM + SAFE, [1] * 4 + [0] * 4)
    guard = StreamGuard(clf, threshold=1.0, hold_back=0)
    out, _ = guard.push("a short reply of a few tokens")
    assert out == ""  # the chunk is not full: nothing has been read, nothing goes out
    tail, blocked = guard.flush()
    assert not blocked and tail == "a short reply of a few tokens"
    assert clf.pending_chars(guard.state) == 0
    # A guard whose threshold the last chunk crosses blocks at the end, releasing nothing.
    strict = StreamGuard(clf, threshold=0.0, hold_back=0)
    assert strict.push("x y z") == ("", True)


# ---- fine-tuning and categories --------------------------------------------------------------
def test_finetuning_goes_through_hf_finetune_and_saves_the_body(tiny: str,
                                                                tmp_path: Path) -> None:
    clf = EncoderClassifier(model_dir=tiny, finetune_steps=3).fit(HARM + SAFE, [1] * 4 + [0] * 4)
    saved = clf.save(tmp_path / "ft")
    assert (saved / "model" / "model.safetensors").is_file()
    loaded = load_classifier(saved)
    np.testing.assert_array_equal(loaded.predict_proba(HARM), clf.predict_proba(HARM))
    # The fine-tuned body differs from the base it started from.
    base = EncoderClassifier(model_dir=tiny).fit(HARM + SAFE, [1] * 4 + [0] * 4)
    assert not np.allclose(base.predict_proba(HARM), clf.predict_proba(HARM))
    _flip(saved / "model" / "model.safetensors")
    with pytest.raises(ClassifierError, match=re.escape(str(saved / "model" /
                                                            "model.safetensors"))):
        load_classifier(saved)


def test_category_scorer_fits_saves_and_loads(tiny: str, tmp_path: Path) -> None:
    cats = ("weapons", "cyber")
    labels = np.array([[1, 0], [0, 1], [-1, -1], [1, 0]] + [[0, 0]] * 4)
    scorer = EncoderCategoryScorer(model_dir=tiny).fit(HARM + SAFE, labels, cats)
    p = scorer.predict_proba(HARM)
    assert p.shape == (4, 2) and ((p >= 0) & (p <= 1)).all()
    assert scorer.predict_proba([]).shape == (0, 2)
    loaded = load_category_scorer(scorer.save(tmp_path / "cats"))
    assert loaded.categories == cats
    np.testing.assert_array_equal(loaded.predict_proba(HARM), p)
    with pytest.raises(ValueError, match="no training text of category cyber"):
        EncoderCategoryScorer(model_dir=tiny).fit(HARM, [[1, 0]] * 4, cats)
    with pytest.raises(ValueError, match=r"\(4, 2\) label matrix"):
        EncoderCategoryScorer(model_dir=tiny).fit(HARM, [[1]] * 4, cats)


# ---- the head ----------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["mlp", "logistic"])
def test_either_head_saves_and_loads_to_the_same_scores(tiny: str, tmp_path: Path,
                                                        head: str) -> None:
    clf = EncoderClassifier(model_dir=tiny, head=head).fit(HARM + SAFE, [1] * 4 + [0] * 4)
    loaded = load_classifier(clf.save(tmp_path / head))
    assert loaded.config.head == head
    np.testing.assert_array_equal(loaded.predict_proba(HARM + SAFE),
                                  clf.predict_proba(HARM + SAFE))


def test_a_heads_file_of_the_other_kind_is_named(tiny: str, tmp_path: Path) -> None:
    from swisscheese.classifiers.persist import sha256_file

    fit = dict(texts=HARM + SAFE, labels=[1] * 4 + [0] * 4)
    mlp = EncoderClassifier(model_dir=tiny).fit(**fit).save(tmp_path / "mlp")
    lin = EncoderClassifier(model_dir=tiny, head="logistic").fit(**fit).save(tmp_path / "lin")
    heads = mlp / "heads.safetensors"
    shutil.copy(lin / "heads.safetensors", heads)
    meta = json.loads((mlp / "config.json").read_text())
    meta["files"]["heads.safetensors"] = sha256_file(heads)  # a consistent, wrong save
    (mlp / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ClassifierError, match=re.escape(str(heads)) + ".*expected tensors w1"):
        load_classifier(mlp)


def test_a_save_from_before_the_mlp_head_loads_as_logistic(tiny: str, tmp_path: Path) -> None:
    clf = EncoderClassifier(model_dir=tiny, head="logistic").fit(HARM + SAFE, [1] * 4 + [0] * 4)
    saved = clf.save(tmp_path / "old")
    meta = json.loads((saved / "config.json").read_text())
    for key in ("head", "hidden", "head_epochs", "head_noise"):
        del meta["config"][key]
    (saved / "config.json").write_text(json.dumps(meta))
    loaded = load_classifier(saved)
    assert loaded.config.head == "logistic"
    np.testing.assert_array_equal(loaded.predict_proba(HARM), clf.predict_proba(HARM))
    with pytest.raises(ValueError, match="head must be one of mlp, logistic"):
        EncoderClassifier(model_dir=tiny, head="tree")
