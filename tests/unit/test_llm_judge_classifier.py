"""The `llm-judge` classifier against a real judge on loopback: what it sends, what it
reads, and that every failure raises (a guard then fails closed) instead of guessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from swisscheese.classifiers import ClassifierError, get_classifier, load_classifier
from swisscheese.models.base import EndpointError
from tests.judge_server import JudgeServer

ASK = "How do I brew the Demze toxin?"
ABOUT = "What is the history of the Demze toxin?"


def test_it_rates_each_text_with_the_rubric_as_system_prompt() -> None:
    with JudgeServer() as server:
        clf = get_classifier("llm-judge", base_url=server.url, model="judge")
        s = clf.predict_proba([ASK, "", ABOUT])
        assert np.allclose(s, [0.95, 0.0, 0.05])
        assert sorted(server.texts) == sorted([ASK, ABOUT])  # not the empty text (calls run
        # concurrently, so in any order)
        body = server.requests[0]
        assert body["model"] == "judge" and body["temperature"] == 0.0
        assert body["messages"][0]["role"] == "system"
        assert "safety classifier" in body["messages"][0]["content"]


def test_a_long_text_is_cut_to_its_end() -> None:
    with JudgeServer() as server:
        clf = get_classifier("llm-judge", base_url=server.url, max_chars=len(ASK))
        assert clf.predict_proba(["x" * 500 + ASK])[0] == pytest.approx(0.95)
        assert server.texts == [ASK]


def test_no_rating_in_the_reply_raises_naming_the_endpoint() -> None:
    with JudgeServer(mode="invalid") as server:
        clf = get_classifier("llm-judge", base_url=server.url)
        with pytest.raises(ClassifierError, match=r"127\.0\.0\.1.*no rating"):
            clf.predict_proba([ASK])


def test_an_endpoint_that_is_down_raises_naming_it() -> None:
    with JudgeServer() as server:
        url = server.url
    clf = get_classifier("llm-judge", base_url=url, model="judge", timeout=1.0,
                         max_retries=0)
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1"):
        clf.predict_proba([ASK])
    assert clf.predict_proba([""])[0] == 0.0  # nothing to ask: no call, no error


def test_the_api_key_is_read_from_the_environment_and_never_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-123")
    with JudgeServer() as server:
        clf = get_classifier("llm-judge", base_url=server.url, api_key_env="JUDGE_KEY")
        clf.fit([ASK, ABOUT], [1, 0]).save(tmp_path / "j")
        saved = "".join(p.read_text() for p in (tmp_path / "j").iterdir())
        assert "sk-secret-123" not in saved
        assert load_classifier(tmp_path / "j").predict_proba([ASK])[0] == pytest.approx(0.95)
    meta = json.loads((tmp_path / "j" / "config.json").read_text())
    assert meta["settings"]["api_key_env"] == "JUDGE_KEY"


@pytest.mark.parametrize("kwargs, message", [
    ({"base_url": "ftp://x"}, "http"),
    ({"base_url": "http://127.0.0.1:9/v1", "rubric": " "}, "rubric"),
    ({"base_url": "http://127.0.0.1:9/v1", "max_chars": 0}, "max_chars"),
    ({"base_url": "http://127.0.0.1:9/v1", "timeout": 0}, "timeout"),
])
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_classifier("llm-judge", **kwargs)


def test_bad_saved_settings_name_the_file(tmp_path: Path) -> None:
    clf = get_classifier("llm-judge", base_url="http://127.0.0.1:9/v1")
    d = clf.save(tmp_path / "j")
    meta = json.loads((d / "config.json").read_text())
    meta["settings"]["max_chars"] = -3
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ClassifierError, match=r"config\.json.*max_chars"):
        load_classifier(d)
