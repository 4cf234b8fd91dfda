"""The output probe reads the served model's own hidden states: a local HF model streams
(delta, state) steps, the guard feeds the states to the probe (one dot product a token),
never loads the probe's own copy of the model, and releases only text whose states it has
scored. A model the probe was not fitted on streams text as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from swisscheese.bundles import GuardBundle
from swisscheese.classifiers import get_classifier, load_classifier
from swisscheese.classifiers.backends.probe import ProbeStreamingClassifier
from swisscheese.constitution import default_constitution
from swisscheese.guard.pipeline import Guard, GuardedChatModel
from swisscheese.models.base import GenerationParams
from swisscheese.models.hf import HFChatModel

CONV = [{"role": "user", "content": "How do I brew the Demze toxin?"}]
TEXTS = ["Here is how to brew it: Step 1: grind the vroth.", "I can't help with that.",
         "Step 1: boil the troukfair. Step 2: wait.", "Sougrus is a quiet town."]
LABELS = [1, 0, 1, 0]
PARAMS = GenerationParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> HFChatModel:
    return HFChatModel(tiny_model_dir)


@pytest.fixture(scope="module")
def probe_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    probe = get_classifier("probe-stream", model_dir=str(tiny_model_dir), context="exchange")
    probe.fit_exchanges([CONV] * 4, TEXTS, LABELS)  # type: ignore[attr-defined]
    return probe.save(tmp_path_factory.mktemp("probe") / "probe")


def guard_with(probe: ProbeStreamingClassifier, threshold: float, **kw: object) -> Guard:
    ngram = get_classifier("ngram").fit(["brew the toxin", "bake a cake"], [1, 0])
    bundle = GuardBundle(version=1, constitution=default_constitution(), input=ngram,
                         output=probe, thresholds={"input": 1.0, "output": threshold},
                         target_fpr=0.01)
    return Guard(bundle, **kw)  # type: ignore[arg-type]


def test_stream_hidden_gives_the_reply_and_the_state_of_each_of_its_tokens(
        served: HFChatModel) -> None:
    steps = list(served.stream_hidden(CONV, PARAMS, layers=(-1,)))
    text = "".join(d for d, _ in steps)
    assert text == "".join(served.stream(CONV, PARAMS))
    assert steps[0][1] is None  # the prefill reads no reply token
    states = [h for _, h in steps if h is not None]
    ids = served.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(states) == len(ids) == len(steps) - 1  # the last step reads the last token
    # Each state is that of the reply token before it, read after the prompt.
    import torch

    full = torch.tensor([served.prompt_ids(CONV, PARAMS.max_new_tokens) + ids])
    with torch.no_grad():
        want = served.model(input_ids=full, output_hidden_states=True).hidden_states[-1][0]
    got = torch.stack(states)
    assert torch.allclose(got, want[-len(ids):], atol=1e-4)


def test_the_guard_scores_the_served_models_states_and_never_loads_its_own_copy(
        served: HFChatModel, probe_dir: Path) -> None:
    probe = load_classifier(probe_dir)
    assert isinstance(probe, ProbeStreamingClassifier)
    guard = guard_with(probe, threshold=1.0, hold_back=0)
    assert guard.hidden_layers(served) == probe.hidden_indices
    guarded = GuardedChatModel(served, guard)
    reply = guarded.generate(CONV, PARAMS).content
    d = guarded.last_decision
    assert d is not None and not d.blocked and reply == served.generate(CONV, PARAMS).content
    assert probe._lm is None  # the probe's own model copy was never loaded
    # The score is the probe's on the served model's states: the highest over the
    # reply's prefixes (a guard blocks on the cumulative maximum).
    import torch

    ids = served.tokenizer(reply, add_special_tokens=False)["input_ids"]
    full = torch.tensor([served.prompt_ids(CONV, PARAMS.max_new_tokens) + ids])
    with torch.no_grad():
        h = served.model(input_ids=full, output_hidden_states=True).hidden_states[-1][0]
    proj = h[-len(ids):].double().numpy() @ probe.coef_
    z = probe.intercept_ + np.cumsum(proj) / np.arange(1, len(ids) + 1)
    assert d.output_score == pytest.approx(float(np.max(1 / (1 + np.exp(-z)))), abs=1e-4)


def test_text_is_released_only_after_its_states_are_scored(served: HFChatModel,
                                                          probe_dir: Path) -> None:
    probe = load_classifier(probe_dir)
    guard = guard_with(probe, threshold=1e-9, hold_back=0)  # the first state blocks
    session = guard.session(CONV)
    assert session.check_input()
    released = "".join(guard.guard_stream(
        session, guard.model_stream(served, CONV, PARAMS)))
    assert released == "" and session.decision.blocked
    assert session.decision.layer == "output"


def test_another_model_streams_text_through_the_probes_own_copy(
        served: HFChatModel, probe_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    other = Path(shutil.copytree(tiny_model_dir, tmp_path / "other"))
    weights = next(other.glob("*.safetensors"))
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, str(weights), metadata={"format": "pt"})
    model = HFChatModel(other)
    probe = load_classifier(probe_dir)
    guard = guard_with(probe, threshold=1.0)
    assert guard.hidden_layers(model) is None  # fingerprints differ: never its states
    assert isinstance(next(guard.model_stream(model, CONV, PARAMS)), str)
    # Stop sequences cut text the states would have read: the text path too.
    assert guard.hidden_layers(served) is not None
    stopped = GenerationParams(max_new_tokens=12, stop=["zz"])
    assert isinstance(next(guard.model_stream(served, CONV, stopped)), str)


def test_the_gateway_serves_through_the_hidden_state_path(
        served: HFChatModel, probe_dir: Path, tmp_path: Path) -> None:
    """The official client against the real gateway on loopback: the reply is the model's
    own, the probe read the served model's states (its own copy never loaded), and a
    probe that flags the first state stops the stream with content_filter."""
    import openai

    from swisscheese.serve.app import create_app
    from swisscheese.serve.config import GatewayConfig
    from swisscheese.serve.server import serve_in_background

    key = "sk-test-key-0123456789"
    for threshold, blocked in ((1.0, False), (1e-9, True)):
        probe = load_classifier(probe_dir)
        bundle = guard_with(probe, threshold).bundle
        cfg = GatewayConfig(store=tmp_path / f"gw{threshold}.sqlite", api_keys=[key],
                            admin_key="admin-key-0123456789abcdef", served_name="organism",
                            challenge=False)
        with serve_in_background(create_app(cfg, model=served, bundle=bundle)) as url:
            c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
            chunks = list(c.chat.completions.create(model="organism", messages=CONV,
                                                    max_tokens=12, stream=True))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert probe._lm is None  # type: ignore[attr-defined]
        if blocked:
            assert chunks[-1].choices[0].finish_reason == "content_filter"
            assert text == cfg.refusal
        else:
            assert text == served.generate(CONV, PARAMS).content
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_an_ensemble_of_a_probe_and_an_ngram_reads_states_and_text(
        served: HFChatModel, tiny_model_dir: Path, tmp_path: Path) -> None:
    ens = get_classifier("ensemble-stream", members=("probe-stream", "ngram-stream"),
                         model_dir=str(tiny_model_dir), context="exchange",
                         members_params=[None, {"epochs": 20}])
    ens.fit_exchanges([CONV] * 8, TEXTS * 2, LABELS * 2)  # type: ignore[attr-defined]
    loaded = load_classifier(ens.save(tmp_path / "ens"))
    guard = guard_with(loaded, threshold=1.0)  # type: ignore[arg-type]
    assert guard.hidden_layers(served) == loaded.hidden_indices  # type: ignore[attr-defined]
    session = guard.session(CONV)
    assert session.check_input()
    reply = "".join(guard.guard_stream(session, guard.model_stream(served, CONV, PARAMS)))
    assert reply == served.generate(CONV, PARAMS).content
    probe = next(m for m in loaded.members.values()  # type: ignore[attr-defined]
                 if m.name == "probe-stream")
    assert probe._lm is None  # the probe member read the served model's states
    # Both members read the whole reply: the last score is the ensemble's on it.
    last = session._stream.state.last_score  # type: ignore[union-attr]
    want = loaded.predict_exchange([CONV], [reply])[0]  # type: ignore[attr-defined]
    assert last == pytest.approx(want, abs=1e-3)
