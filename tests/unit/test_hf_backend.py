import json

import pytest

from swisscheese.models import ChatModel, GenerationParams, ModelLoadError, load_model
from swisscheese.models.hf import HFChatModel


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


def test_hf_backend_is_a_chat_model(tiny):
    assert isinstance(tiny, HFChatModel)
    assert isinstance(tiny, ChatModel)


def test_uses_the_chat_template(tiny):
    text = tiny.prompt_text([{"role": "user", "content": "hello"}])
    assert text == "<|user|>hello<|end|><|assistant|>"


def test_greedy_stream_matches_generate(tiny):
    p = GenerationParams(max_new_tokens=12)
    whole = tiny.generate("What is 2 plus 2?", p).content
    streamed = list(tiny.stream("What is 2 plus 2?", p))
    assert "".join(streamed) == whole
    assert whole, "an untrained model still emits tokens"


def test_batch_matches_single_despite_left_padding(tiny):
    p = GenerationParams(max_new_tokens=8)
    convs = ["hi", "What is the history of the long named thing over there?"]
    batch = [m.content for m in tiny.generate_batch(convs, p)]
    single = [tiny.generate(c, p).content for c in convs]
    assert batch == single


def test_sampling_is_seeded(tiny):
    p = GenerationParams(max_new_tokens=10, temperature=1.0, seed=3)
    assert tiny.generate("hi", p).content == tiny.generate("hi", p).content
    assert "".join(tiny.stream("hi", p)) == "".join(tiny.stream("hi", p))


def test_stop_strings_cut_the_reply(tiny):
    p = GenerationParams(max_new_tokens=16)
    whole = tiny.generate("hi", p).content
    if len(whole) < 3:
        pytest.skip("reply too short to cut")
    stop = whole[2:4]
    p_stop = GenerationParams(max_new_tokens=16, stop=[stop])
    assert tiny.generate("hi", p_stop).content == whole[: whole.find(stop)]
    assert "".join(tiny.stream("hi", p_stop)) == whole[: whole.find(stop)]


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope"))


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_not_a_causal_lm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not a causal LM"):
        load_model(str(tmp_path))


def test_corrupt_weights(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load weights"):
        load_model(str(d))


def test_stop_filter_holds_back_a_partial_stop():
    from swisscheese.models.base import stop_filtered

    assert list(stop_filtered(iter(["ab", "c<", "/s", "> more"]), ["</s>"])) == ["ab", "c"]
    assert "".join(stop_filtered(iter(["ab", "c<", "/t"]), ["</s>"])) == "abc</t"
    assert list(stop_filtered(iter(["x", "y"]), [])) == ["x", "y"]
