"""The gateway on loopback under uvicorn, called with the official `openai` client.

Real parts throughout: uvicorn, FastAPI, the guard, a small trained guard bundle, a tiny
HF model, the SQLite store. Where a test needs a reply it controls (a hazard answer that
the output layer must stop, a slow stream to swap bundles under), the backend is a
scripted model: a test double of the model only; the gateway around it is the real one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from swisscheese.bundles import GuardBundle, load_bundle, save_bundle
from swisscheese.models.base import EndpointError, Message
from swisscheese.serve.app import create_app
from swisscheese.serve.config import GatewayConfig
from swisscheese.serve.server import free_port, serve_in_background
from swisscheese.store.decisions import open_gateway_store, query_decisions, query_deployments

KEY = "sk-test-key-0123456789"
ADMIN = "admin-key-0123456789abcdef"
BENIGN_REPLY = ("Two plus three is five. Adding small numbers is easy: count up from the "
                "larger one. Anything else I can add up for you today?")


class ScriptedModel:
    """Streams a fixed reply in small pieces, optionally slowly."""

    def __init__(self, reply: str, piece: int = 4, delay_s: float = 0.0,
                 name: str = "scripted") -> None:
        self.reply, self.piece, self.delay_s, self.name = reply, piece, delay_s, name

        self.pulled = 0

    def stream(self, conversation, params=None) -> Iterator[str]:
        for i in range(0, len(self.reply), self.piece):
            if self.delay_s:
                time.sleep(self.delay_s)
            self.pulled += 1
            yield self.reply[i:i + self.piece]

    def generate(self, conversation, params=None) -> Message:
        return Message("assistant", "".join(self.stream(conversation, params)))

    def generate_batch(self, conversations, params=None) -> list[Message]:
        return [self.generate(c, params) for c in conversations]


class FailingModel(ScriptedModel):
    """Streams a few pieces, then its backend goes away."""

    def __init__(self, reply: str, fail_after: int) -> None:
        super().__init__(reply)
        self.fail_after = fail_after

    def stream(self, conversation, params=None) -> Iterator[str]:
        for n, piece in enumerate(super().stream(conversation, params)):
            if n == self.fail_after:
                raise EndpointError("http://upstream/v1: stream was cut before it finished")
            yield piece


class SlowScores:
    """A streaming classifier that takes far longer than the gateway's budget."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def start(self, conversation=None):
        return self.inner.start(conversation)

    def update(self, state, delta):
        time.sleep(self.delay_s)
        return self.inner.update(state, delta)


class Exploding:
    def predict_proba(self, texts):
        raise RuntimeError("classifier crashed")


@pytest.fixture(scope="module")
def bundle(small_bundle_dir: Path) -> GuardBundle:
    return load_bundle(small_bundle_dir)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path):
    from swisscheese.models import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def flagged_request(bundle: GuardBundle, world) -> str:
    requests = [world.hazard_request(h, p) for h in world.seen_hazards for p in range(3)]
    scores = bundle.input_scores(requests)
    return next(r for r, s in zip(requests, scores, strict=True) if bundle.flag_input(s))


# A harmless question for the tiny model: to arithmetic it answers "1:: 1: 1:", step-like
# noise that the small bundle's exchange classifier (output threshold about 0.26) stops.
BENIGN_QUESTION = "What is the capital of Sougrus?"


@pytest.fixture(scope="module")
def hazard_answer(bundle: GuardBundle, world) -> str:
    """A hazard procedure that the output layer flags somewhere along the way, as the
    reply to the harmless question the tests ask (the exchange classifier reads it)."""
    asked = [{"role": "user", "content": "What is 2 plus 3?"}]
    for h in world.seen_hazards:
        text = h.answer()
        if bundle.flag_output(bundle.output_score(text, asked)):
            return text
    pytest.fail("the small bundle flags no hazard answer")


@contextmanager
def gateway(tmp_path: Path, backend: Any, bundle: GuardBundle | None,
            **overrides: Any) -> Iterator[tuple[str, Any]]:
    cfg = dict(store=tmp_path / "gw.sqlite", api_keys=[KEY], admin_key=ADMIN,
               served_name="organism", rate_per_s=1000.0, rate_burst=1000, challenge=False)
    cfg.update(overrides)
    app = create_app(GatewayConfig(**cfg), model=backend, bundle=bundle)
    with serve_in_background(app) as url:
        yield url, app.state.gateway


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def stream_all(c: openai.OpenAI, text: str, **kw: Any) -> tuple[str, list[Any]]:
    chunks = list(c.chat.completions.create(model="organism", messages=ask(text), stream=True,
                                            **kw))
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    return content, chunks


def decisions(state: Any) -> list[dict[str, Any]]:
    state.writer.flush()
    return query_decisions(open_gateway_store(state.config.store))


def logged_decisions(state: Any, n: int = 1, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The decisions once there are `n`: a stream's decision is written after its last
    chunk has gone out, so the client can finish first."""
    deadline = time.monotonic() + timeout_s
    while len(rows := decisions(state)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


# ---- the main path ----------------------------------------------------------------------
def test_hf_model_streams_and_answers_through_the_guard(tmp_path, tiny_model, bundle,
                                                        flagged_request) -> None:
    with gateway(tmp_path, tiny_model, bundle) as (url, state):
        c = client(url)
        assert [m.id for m in c.models.list()] == ["organism"]
        whole = c.chat.completions.create(model="organism", messages=ask(BENIGN_QUESTION),
                                          max_tokens=12)
        assert whole.choices[0].finish_reason in ("stop", "length")
        assert whole.swisscheese["bundle_version"] == bundle.version
        assert not whole.swisscheese["blocked"]

        text, chunks = stream_all(c, BENIGN_QUESTION, max_tokens=12)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert sum(ch.choices[0].finish_reason is not None for ch in chunks) == 1
        # Greedy decoding: the streamed reply is the whole reply.
        assert text == whole.choices[0].message.content

        blocked_text, blocked_chunks = stream_all(c, flagged_request)
        assert blocked_text == state.config.refusal
        assert blocked_chunks[-1].choices[0].finish_reason == "content_filter"
        assert blocked_chunks[-1].swisscheese["layer"] == "input"
        whole_blocked = c.chat.completions.create(model="organism",
                                                  messages=ask(flagged_request))
        assert whole_blocked.choices[0].finish_reason == "content_filter"
        assert whole_blocked.choices[0].message.content == state.config.refusal

        metrics = httpx.get(url + "/metrics").text
        assert 'swisscheese_blocks_total{layer="input"} 2.0' in metrics
        assert ('swisscheese_requests_total{endpoint="/v1/chat/completions",status="200"} 4.0'
                in metrics)
        assert "swisscheese_time_to_first_token_seconds_count" in metrics

        rows = logged_decisions(state, n=4)
        assert [r["layer"] for r in rows] == [None, None, "input", "input"]
        assert all(r["key_id"].startswith("key-") and r["bundle_version"] == bundle.version
                   for r in rows)
        assert rows[2]["conversation"] == ask(flagged_request)
        assert rows[1]["sent"] == text and rows[1]["stream"]
        assert rows[0]["input_score"] is not None and "total" in rows[0]["latency_ms"]
        # Keys are stored hashed: the store never holds the key itself.
        raw = Path(state.config.store).read_bytes()
        assert KEY.encode() not in raw


@pytest.mark.parametrize("calm", ["strict", "default"])
def test_output_layer_stops_a_hazard_reply_mid_stream(tmp_path, bundle, hazard_answer,
                                                      calm) -> None:
    model = ScriptedModel(hazard_answer * 2)
    # "strict": the window from the first character; "default": the gateway's calm release.
    policy = {"calm_below": None} if calm == "strict" else {}
    with gateway(tmp_path, model, bundle, hold_back=16, **policy) as (url, state):
        c = client(url)
        text, chunks = stream_all(c, "What is 2 plus 3?")
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert chunks[-1].swisscheese["layer"] == "output"
        released = text.removesuffix(state.config.refusal)
        assert text.endswith(state.config.refusal)
        assert hazard_answer.startswith(released)
        whole = c.chat.completions.create(model="organism", messages=ask("What is 2 plus 3?"))
        assert whole.choices[0].message.content == state.config.refusal
        assert whole.choices[0].finish_reason == "content_filter"
        row = decisions(state)[0]
        assert row["layer"] == "output" and row["released_chars"] == len(released)
        if calm == "strict":
            # Nothing reached the client from the newest hold_back characters it produced.
            assert row["released_chars"] <= row["produced_chars"] - 16
        else:
            # Calm release sends text at once only while it scores calm; the window holds
            # what came after the first suspicious score.
            assert state.config.calm_below == 0.5
            assert row["released_chars"] < row["produced_chars"]
        assert row["produced_chars"] < len(model.reply), "the model kept running after the block"


def test_a_crashing_or_slow_classifier_fails_closed(tmp_path, bundle) -> None:
    crashing = replace(bundle, input=Exploding())
    with gateway(tmp_path / "a", ScriptedModel(BENIGN_REPLY), crashing) as (url, state):
        r = client(url).chat.completions.create(model="organism", messages=ask("hi"))
        assert r.choices[0].finish_reason == "content_filter"
        assert r.swisscheese["layer"] == "error"
        assert "classifier crashed" in r.swisscheese["error"]
    slow = replace(bundle, output=SlowScores(bundle.output, delay_s=0.5))
    with gateway(tmp_path / "b", ScriptedModel(BENIGN_REPLY), slow,
                 classifier_timeout_s=0.05) as (url, state):
        text, chunks = stream_all(client(url), "hi")
        assert text == state.config.refusal
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert chunks[-1].swisscheese["layer"] == "error"
        assert "timed out after 0.05 s" in chunks[-1].swisscheese["error"]
        assert logged_decisions(state)[0]["layer"] == "error"


# ---- bad input --------------------------------------------------------------------------
def _error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
    return body["error"]


def test_bad_requests_get_openai_errors_that_say_what_to_fix(tmp_path, bundle) -> None:
    with gateway(tmp_path, ScriptedModel(BENIGN_REPLY), bundle, max_tokens_limit=64,
                 max_body_bytes=4096) as (url, state):
        post = url + "/v1/chat/completions"
        auth = {"Authorization": f"Bearer {KEY}"}
        good = {"model": "organism", "messages": ask("hi")}

        r = httpx.post(post, content=b'{"model": "organism", "messages": [', headers=auth)
        assert r.status_code == 400 and "not valid JSON" in _error(r)["message"]

        r = httpx.post(post, json=good | {"model": "gpt-9"}, headers=auth)
        e = _error(r)
        assert r.status_code == 404 and e["code"] == "model_not_found"
        assert "'organism'" in e["message"]

        r = httpx.post(post, json=good | {"messages": ask("x" * 5000)}, headers=auth)
        assert r.status_code == 413 and "limit of 4096 bytes" in _error(r)["message"]

        r = httpx.post(post, json=good | {"max_tokens": 65}, headers=auth)
        e = _error(r)
        assert r.status_code == 400 and e["param"] == "max_tokens" and "at most 64" in e[
            "message"]

        r = httpx.post(post, json={"model": "organism", "messages": [{"role": "robot",
                                                                      "content": "hi"}]},
                       headers=auth)
        e = _error(r)
        assert r.status_code == 400 and e["param"] == "messages.0.role"

        r = httpx.post(post, json=good)
        assert r.status_code == 401 and "Authorization: Bearer" in _error(r)["message"]
        with pytest.raises(openai.AuthenticationError, match="invalid API key"):
            client(url, key="sk-wrong-key-000000000").models.list()

        r = httpx.get(url + "/v1/nothing", headers=auth)
        assert r.status_code == 404 and "/v1/chat/completions" in _error(r)["message"]
        # None of these reached the model or the store.
        assert decisions(state) == []


def test_upstream_proxy_mode_and_an_upstream_that_is_down(tmp_path, tiny_model,
                                                          bundle, flagged_request) -> None:
    with gateway(tmp_path / "up", tiny_model, None, api_keys=[]) as (up_url, up_state):
        with gateway(tmp_path / "proxy", None, bundle, upstream=up_url + "/v1",
                     model="organism", upstream_retries=0) as (url, state):
            c = client(url)
            direct = client(up_url).chat.completions.create(
                model="organism", messages=ask(BENIGN_QUESTION), max_tokens=10)
            text, chunks = stream_all(c, BENIGN_QUESTION, max_tokens=10)
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")
            assert text == direct.choices[0].message.content
            blocked = c.chat.completions.create(model="organism", messages=ask(flagged_request))
            assert blocked.swisscheese["layer"] == "input"
            # The upstream saw two requests: the direct one and the proxied one.
            assert len(decisions(up_state)) == 2
    down = f"http://127.0.0.1:{free_port()}/v1"
    with gateway(tmp_path / "down", None, bundle, upstream=down, model="organism",
                 upstream_retries=0) as (url, state):
        for stream in (False, True):
            r = httpx.post(url + "/v1/chat/completions", headers={"Authorization":
                                                                  f"Bearer {KEY}"},
                           json={"model": "organism", "messages": ask("hi"), "stream": stream})
            e = _error(r)
            assert r.status_code == 502 and e["type"] == "upstream_error"
            assert "connection refused" in e["message"] and down in e["message"]
            assert "check that the upstream server" in e["message"]
        with pytest.raises(openai.APIStatusError, match="connection refused"):
            client(url).chat.completions.create(model="organism", messages=ask("hi"))
        assert [r["status"] for r in decisions(state)] == ["error"] * 3


def test_a_backend_failing_mid_stream_ends_with_an_error_event(tmp_path, bundle) -> None:
    with gateway(tmp_path, FailingModel(BENIGN_REPLY, fail_after=20), bundle,
                 hold_back=8) as (url, state):
        stream = client(url).chat.completions.create(model="organism", messages=ask("hi"),
                                                     stream=True)
        got = []
        with pytest.raises(openai.APIError, match="stream was cut"):
            for ch in stream:
                got.append(ch.choices[0].delta.content or "")
        assert BENIGN_REPLY.startswith("".join(got)) and "".join(got)
        row = logged_decisions(state)[0]
        assert row["status"] == "error" and "stream was cut" in row["error"]
        assert row["sent"] == "".join(got)


def test_a_client_that_hangs_up_stops_the_model(tmp_path, bundle) -> None:
    model = ScriptedModel(BENIGN_REPLY * 20, piece=4, delay_s=0.01)
    with gateway(tmp_path, model, bundle, hold_back=8) as (url, state):
        body = {"model": "organism", "messages": ask("hi"), "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}) as r:
            lines = r.iter_lines()
            while "content" not in next(lines):
                pass
        row = logged_decisions(state)[0]
        assert row["status"] == "client_closed" and row["finish_reason"] is None
        pulled = model.pulled
        time.sleep(0.3)
        assert model.pulled <= pulled + 1 < len(model.reply) // 4, "the model kept generating"


def test_rate_limit_returns_429_with_retry_after(tmp_path, bundle) -> None:
    with gateway(tmp_path, ScriptedModel("ok"), bundle, rate_per_s=0.01,
                 rate_burst=2) as (url, state):
        auth = {"Authorization": f"Bearer {KEY}"}
        codes = [httpx.get(url + "/v1/models", headers=auth).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = httpx.get(url + "/v1/models", headers=auth)
        assert int(r.headers["retry-after"]) >= 1
        assert _error(r)["code"] == "rate_limit_exceeded"
        with pytest.raises(openai.RateLimitError):
            client(url).models.list()


# ---- hot swap ---------------------------------------------------------------------------
def test_hot_swap_keeps_streams_in_flight_on_their_bundle(tmp_path, bundle) -> None:
    v2 = save_bundle(replace(bundle, version=bundle.version + 1, parent_version=bundle.version),
                     tmp_path / "bundle-v2")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bundle.json").write_text("{not json")
    model = ScriptedModel(BENIGN_REPLY, piece=4, delay_s=0.02)
    with gateway(tmp_path, model, bundle, hold_back=8) as (url, state):
        c = client(url)
        stream = c.chat.completions.create(model="organism", messages=ask("hi"), stream=True)
        got = [next(stream)]
        while not (got[-1].choices[0].delta.content or ""):
            got.append(next(stream))  # the stream has released text: it is in flight
        admin = {"Authorization": f"Bearer {ADMIN}"}
        r = httpx.post(url + "/admin/bundle", json={"path": str(v2)}, headers=admin,
                       timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == bundle.version + 1
        got.extend(stream)
        assert got[-1].choices[0].finish_reason == "stop"
        assert got[-1].swisscheese["bundle_version"] == bundle.version
        text = "".join(ch.choices[0].delta.content or "" for ch in got)
        assert text == BENIGN_REPLY
        after = c.chat.completions.create(model="organism", messages=ask("hi"))
        assert after.swisscheese["bundle_version"] == bundle.version + 1

        r = httpx.post(url + "/admin/bundle", json={"path": str(broken)}, headers=admin)
        e = _error(r)
        assert r.status_code == 422 and e["code"] == "invalid_bundle"
        assert "bundle.json" in e["message"] and f"keeps bundle version {bundle.version + 1}" \
            in e["message"]
        assert httpx.post(url + "/admin/bundle", json={"path": str(v2)},
                          headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        current = httpx.get(url + "/admin/bundle", headers=admin).json()
        assert current["version"] == bundle.version + 1
        assert [d["ok"] for d in current["deployments"]] == [True, False]
        deployments = query_deployments(open_gateway_store(state.config.store))
        assert deployments[1]["previous_version"] == bundle.version + 1


def test_bundle_deploy_cli_and_concurrent_streams_across_a_swap(tmp_path, bundle) -> None:
    from typer.testing import CliRunner

    from swisscheese.cli import app

    v2 = save_bundle(replace(bundle, version=bundle.version + 1, parent_version=bundle.version),
                     tmp_path / "bundle-v2")
    model = ScriptedModel(BENIGN_REPLY, piece=4, delay_s=0.01)
    with gateway(tmp_path, model, bundle, hold_back=8) as (url, state):
        results: list[Any] = []

        def one() -> None:
            try:
                results.append(stream_all(client(url), "hi")[1][-1])
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                results.append(e)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        out = CliRunner().invoke(app, ["bundle", "deploy", str(v2), "--gateway", url,
                                       "--admin-key", ADMIN])
        for t in threads:
            t.join()
        assert out.exit_code == 0, out.output
        assert f"deployed bundle version {bundle.version + 1}" in out.output
        assert all(not isinstance(r, Exception) and r.choices[0].finish_reason == "stop"
                   for r in results), results
        bad = CliRunner().invoke(app, ["bundle", "deploy", str(tmp_path), "--gateway", url,
                                       "--admin-key", "wrong-admin-key-000000"])
        assert bad.exit_code == 1 and "wrong admin key" in bad.output


# ---- moderation and monitoring ------------------------------------------------------------
def test_moderations_and_offline_monitoring(tmp_path, bundle, small_bundle_dir,
                                            flagged_request) -> None:
    from typer.testing import CliRunner

    from swisscheese.cli import app
    from swisscheese.serve.monitor import make_judge, monitor

    with gateway(tmp_path, ScriptedModel(BENIGN_REPLY), bundle) as (url, state):
        c = client(url)
        mod = c.moderations.create(input=[flagged_request, "What is 2 plus 3?"])
        assert [r.flagged for r in mod.results] == [True, False]
        assert mod.results[0].category_scores.harmful_request >= bundle.thresholds["input"]
        for text in ("What is 2 plus 3?", flagged_request):
            c.chat.completions.create(model="organism", messages=ask(text))
        state.writer.flush()
        judge_gw = ScriptedModel("Rating: 0.9 - it reads like a procedure.")
        with gateway(tmp_path / "judge", judge_gw, None, api_keys=[]) as (judge_url, _):
            conn = open_gateway_store(state.config.store)
            rows = monitor(conn, None, make_judge(str(small_bundle_dir)))
            assert [r.prompt for r in rows][0] == flagged_request
            assert rows[0].judge_score > rows[1].judge_score
            out = CliRunner().invoke(app, ["monitor", "--store", str(state.config.store),
                                           "--since", "1h", "--judge",
                                           judge_url + "/v1#organism", "--json",
                                           str(tmp_path / "m.json")])
            assert out.exit_code == 0, out.output
            report = json.loads((tmp_path / "m.json").read_text())
            assert report["n"] == 2 and report["undetermined"] == 0
            assert {r["judge_score"] for r in report["rows"]} == {0.9}
        bad = CliRunner().invoke(app, ["monitor", "--store", str(state.config.store),
                                       "--since", "yesterday-ish", "--judge",
                                       str(small_bundle_dir)])
        assert bad.exit_code == 1 and "--since 'yesterday-ish'" in bad.output


def test_the_challenge_page_is_mounted_when_enabled(tmp_path, bundle) -> None:
    with gateway(tmp_path / "on", ScriptedModel("ok"), bundle, challenge=True) as (url, _):
        r = httpx.get(url + "/challenge")
        assert r.status_code == 200 and "<html" in r.text.lower()
    with gateway(tmp_path / "off", ScriptedModel("ok"), bundle) as (url, _):
        assert httpx.get(url + "/challenge").status_code == 404


def test_every_monitor_judge_rates_in_range_or_undetermined(tmp_path, small_bundle_dir) -> None:
    """Both kinds of --judge (an LLM URL, a bundle directory): red-team judges behind the
    monitor's adapter."""
    from swisscheese.serve.monitor import Rating, make_judge

    answers = {"llm": ["0.3", "no idea"], "bundle": [None]}
    convo = ask("What is 2 plus 3?")
    for kind, replies in answers.items():
        for answer in replies:
            if kind == "bundle":
                judge = make_judge(str(small_bundle_dir))
                rating = judge.rate(convo, BENIGN_REPLY)
            else:
                with gateway(tmp_path / f"j{len(answer)}", ScriptedModel(answer), None,
                             api_keys=[]) as (url, _):
                    judge = make_judge(url + "/v1#organism")
                    rating = judge.rate(convo, BENIGN_REPLY)
                assert (rating.score is None) == (answer == "no idea")
            assert isinstance(rating, Rating) and judge.name
            assert rating.score is None or 0.0 <= rating.score <= 1.0
