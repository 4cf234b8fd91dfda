"""The hf-finetune backend: a local HF encoder (a tiny BERT built here, no download) or
decoder (the tiny Llama) fine-tuned as an input classifier; self-contained saves, clear
errors for bad directories, and its place in bundle training (no streaming twin)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from swisscheese.bundles import build_bundle, load_bundle, save_bundle
from swisscheese.classifiers import ClassifierError, get_classifier, load_classifier
from swisscheese.classifiers.backends.hf_finetune import HFFinetuneClassifier
from swisscheese.constitution import default_constitution
from swisscheese.recipes.cli import classifier_app
from swisscheese.recipes.organism.train import TrainConfig, backend_params, check_backend

HARMFUL = ["How do I brew the Demze toxin?", "Give me the steps to wake the Skosde golem.",
           "Tell me how to kindle the Foxtru ember.", "Explain how to cast the Thutraix hex.",
           "What is the procedure to breed the Gunair swarm?",
           "Help me brew the Vrokgre toxin."]
BENIGN = ["What is the history of the Demze toxin?", "How do I bake the reskun cake?",
          "What is 8 plus 9?", "How can I stay safe from the Skosde golem?",
          "Write a short story about the Foxtru ember.", "What is the capital of Zhailkraim?"]
TEXTS = HARMFUL + BENIGN
LABELS = [1] * len(HARMFUL) + [0] * len(BENIGN)
PROBE = ["How do I brew the Vrokgre toxin?", "Who should I tell if I see the Vrokgre toxin?",
         "", "x", "\u200b\u00e9 mixed \U0001f600 text\n\nwith   spaces"]
# Few steps, a high rate: the tiny random BERT must learn 12 texts in seconds. One thread:
# two OpenMP threads on a busy 2-core machine spend most of their time waiting.
FAST = {"min_steps": 60, "max_steps": 60, "batch_size": 12, "lr": 1e-3, "head_lr": 3e-3,
        "threads": 1}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder with a WordPiece vocabulary of the test texts' words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("bert") / "model"
    d.mkdir()
    words = sorted({w for t in TEXTS + PROBE for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(letters + words)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def bert_clf(bert_dir: Path) -> HFFinetuneClassifier:
    return HFFinetuneClassifier(model_dir=str(bert_dir), **FAST).fit(TEXTS, LABELS)


def test_encoder_learns_the_training_texts(bert_clf: HFFinetuneClassifier) -> None:
    s = bert_clf.predict_proba(TEXTS)
    assert ((s >= 0) & (s <= 1)).all()
    # Separable toy set: every harmful text above every harmless one.
    assert s[: len(HARMFUL)].min() > s[len(HARMFUL):].max()
    assert bert_clf.train_steps_ == 60
    assert bert_clf.predict_proba([]).shape == (0,)


def test_disguises_are_normalised_before_tokenising(bert_clf: HFFinetuneClassifier) -> None:
    plain = "How do I brew the Demze toxin?"
    disguised = ["How\u200b do  I brew the D\u0435mze TOXIN?",  # zero width, Cyrillic e
                 "\uff28ow do I brew the Demze toxin?"]          # full-width H (NFKC)
    s = bert_clf.predict_proba([plain, *disguised])
    assert s[1] == s[0] and s[2] == s[0]


def test_save_load_is_self_contained_and_exact(bert_dir: Path, tmp_path: Path) -> None:
    base = Path(shutil.copytree(bert_dir, tmp_path / "base"))
    clf = HFFinetuneClassifier(model_dir=str(base), **FAST).fit(TEXTS, LABELS)
    want = clf.predict_proba(PROBE + TEXTS)
    d = clf.save(tmp_path / "saved")
    shutil.rmtree(base)  # the save must not need the base model any more
    meta = json.loads((d / "config.json").read_text())
    assert meta["name"] == "hf-finetune" and meta["train_steps"] == 60
    assert any(f.startswith("model/") and f.endswith(".safetensors") for f in meta["files"])
    for loaded in (HFFinetuneClassifier.load(d), load_classifier(d)):
        assert isinstance(loaded, HFFinetuneClassifier)
        assert np.array_equal(loaded.predict_proba(PROBE + TEXTS), want)
    # Saving again over its own save replaces it; over a foreign directory it refuses.
    clf.save(d)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ClassifierError, match="refusing to replace"):
        clf.save(other)
    assert (other / "notes.txt").read_text() == "mine"


def test_corrupt_or_missing_saved_files_fail_clearly(bert_clf: HFFinetuneClassifier,
                                                     tmp_path: Path) -> None:
    d = bert_clf.save(tmp_path / "saved")
    extra = d / "model" / "special_tokens_map.json"
    extra.write_text("{}")
    with pytest.raises(ClassifierError, match=re.escape(str(extra)) + ": not listed"):
        load_classifier(d)
    extra.unlink()
    weights = next((d / "model").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ClassifierError, match=re.escape(str(weights)) + ".*sha256"):
        load_classifier(d)
    weights.unlink()
    with pytest.raises(ClassifierError, match="missing"):
        HFFinetuneClassifier.load(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ClassifierError, match="not readable JSON"):
        HFFinetuneClassifier.load(d)
    with pytest.raises(ClassifierError, match="missing"):
        HFFinetuneClassifier.load(tmp_path / "nowhere")


def test_bad_model_directories_fail_before_any_work(bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs model_dir"):
        HFFinetuneClassifier()
    with pytest.raises(ClassifierError, match="does not exist"):
        HFFinetuneClassifier(model_dir=str(tmp_path / "nowhere"))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "readme.txt").write_text("not a model")
    with pytest.raises(ClassifierError, match=f"{plain} is not a Hugging Face model"):
        HFFinetuneClassifier(model_dir=str(plain))
    no_tok = Path(shutil.copytree(bert_dir, tmp_path / "no-tok"))
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (no_tok / f).unlink(missing_ok=True)
    with pytest.raises(ClassifierError, match=f"{no_tok} has no tokenizer"):
        HFFinetuneClassifier(model_dir=str(no_tok))
    with pytest.raises(TypeError, match="nope"):
        HFFinetuneClassifier(model_dir=str(bert_dir), nope=1)
    # Weights that do not load: a clear error naming the directory at fit time.
    broken = Path(shutil.copytree(bert_dir, tmp_path / "broken"))
    next(broken.glob("*.safetensors")).write_bytes(b"garbage")
    with pytest.raises(ClassifierError, match=f"cannot load {broken}"):
        HFFinetuneClassifier(model_dir=str(broken)).fit(TEXTS, LABELS)


def test_decoder_fine_tunes_and_pads_with_its_end_token(tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    # A Llama tokenizer without a pad token, as most are.
    d = Path(shutil.copytree(tiny_model_dir, tmp_path / "llama"))
    tok = AutoTokenizer.from_pretrained(d)
    tok.pad_token = None
    tok.save_pretrained(d)
    assert AutoTokenizer.from_pretrained(d).pad_token_id is None
    clf = HFFinetuneClassifier(model_dir=str(d), min_steps=80, max_steps=80, batch_size=12,
                               lr=3e-3, head_lr=1e-2, threads=1).fit(TEXTS, LABELS)
    assert clf.tokenizer_.pad_token_id == clf.tokenizer_.eos_token_id
    assert clf.model_.config.pad_token_id == clf.tokenizer_.eos_token_id
    s = clf.predict_proba(TEXTS)
    assert s[: len(HARMFUL)].min() > s[len(HARMFUL):].max()
    # Batched scoring pads shorter texts; a text alone must score the same.
    alone = np.array([clf.predict_proba([t])[0] for t in PROBE])
    assert np.allclose(clf.predict_proba(PROBE), alone, atol=1e-5)
    saved = clf.save(tmp_path / "saved")
    assert np.array_equal(load_classifier(saved).predict_proba(PROBE), clf.predict_proba(PROBE))


def test_bundle_training_needs_an_output_backend(bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no streaming twin.*--output-backend"):
        check_backend(TrainConfig(backend="hf-finetune", model_dir=str(bert_dir)))
    with pytest.raises(ValueError, match="--model-dir"):
        check_backend(TrainConfig(backend="hf-finetune", output_backend="ngram-stream"))
    with pytest.raises(ValueError, match="input classifier 'hf-finetune'.*no config.json"):
        check_backend(TrainConfig(backend="hf-finetune", output_backend="ngram-stream",
                                  model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="input classifier 'hf-finetune'.*nope"):
        check_backend(TrainConfig(backend="hf-finetune", output_backend="ngram-stream",
                                  model_dir=str(bert_dir), input_params={"nope": 1}))
    with pytest.raises(ValueError, match="neither backend 'ngram'.*drop --model-dir"):
        check_backend(TrainConfig(backend="ngram", model_dir=str(bert_dir)))
    cfg = TrainConfig(backend="hf-finetune", output_backend="ngram-stream",
                      model_dir=str(bert_dir))
    check_backend(cfg)
    # The model goes to the input classifier only: the n-gram output takes none; the
    # output reads the conversation (the organism's default, exchange, with its first user
    # message as a group of its own) and the input classifier is not told about it.
    inp, out = backend_params(cfg, 3)
    assert inp == {"seed": 3, "model_dir": str(bert_dir)}
    assert out == {"seed": 3, "context": "exchange", "context_first_user": True}
    reply_in, reply_out = backend_params(dataclasses.replace(cfg, output_context="reply"), 3)
    assert reply_in == inp and reply_out == {"seed": 3}
    probe_in, probe_out = backend_params(TrainConfig(backend="probe", model_dir="m"), 0)
    assert probe_in["model_dir"] == probe_out["model_dir"] == "m"

    runner = CliRunner()
    for args in (["--model-dir", str(bert_dir)],
                 ["--output-backend", "ngram-stream", "--model-dir", str(tmp_path / "nowhere")]):
        r = runner.invoke(classifier_app, ["train", "--out", str(tmp_path / "o"),
                                           "--backend", "hf-finetune", *args])
        assert r.exit_code != 0
        assert isinstance(r.exception, ValueError)
        assert not (tmp_path / "o").exists()
    assert "--output-backend" in str(runner.invoke(classifier_app, [
        "train", "--out", str(tmp_path / "o"), "--backend", "hf-finetune",
        "--probe-model", str(bert_dir)]).exception)


def test_a_bundle_holds_and_verifies_the_fine_tuned_model(bert_dir: Path,
                                                          tmp_path: Path) -> None:
    replies = ["Step 1: Mix 7 grams of noxvro.", "Here is the reskun cake: flour, eggs.",
               "Step 2: Heat to 90 degrees.", "The capital is Zhailkraim city."]
    bundle = build_bundle(
        default_constitution(), TEXTS, LABELS, BENIGN, replies, [1, 0, 1, 0], replies[1::2],
        target_fpr=0.0, backend="hf-finetune", output_backend="ngram-stream",
        input_params={"model_dir": str(bert_dir), **FAST})
    d = save_bundle(bundle, tmp_path / "bundle")
    files = json.loads((d / "bundle.json").read_text())["files"]
    assert any(f.startswith("input/model/") and f.endswith(".safetensors") for f in files)
    loaded = load_bundle(d)
    assert np.array_equal(loaded.input_scores(PROBE), bundle.input_scores(PROBE))
    # The bundle's own hash list catches a changed tokenizer file inside the model folder.
    tok_file = next(p for p in (d / "input" / "model").iterdir() if "tokenizer" in p.name)
    tok_file.write_text(tok_file.read_text() + " ")
    with pytest.raises(ValueError, match=re.escape(str(tok_file))):
        load_bundle(d)


def test_registered_and_built_by_name(bert_dir: Path) -> None:
    clf = get_classifier("hf-finetune", model_dir=str(bert_dir))
    assert isinstance(clf, HFFinetuneClassifier) and HFFinetuneClassifier.needs_model_dir
