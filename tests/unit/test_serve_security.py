"""The gateway's building blocks that need no server: the token bucket, key storage,
limits, the config's checks, and the monitor's parsing of judge answers and times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from swisscheese.models.ratings import parse_rating
from swisscheese.serve.config import GatewayConfig
from swisscheese.serve.errors import APIError
from swisscheese.serve.monitor import parse_since
from swisscheese.serve.security import RateLimiter, check_max_tokens
from swisscheese.store.decisions import open_gateway_store
from swisscheese.store.keys import active_key_hashes, add_key, key_hash, new_key, revoke_key


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0, "buckets are per caller"
    clock.t += 0.5
    assert limiter.take("a") == 0.0
    clock.t += 100
    assert [limiter.take("a") for _ in range(4)][-1] > 0, "never more than the burst"
    with pytest.raises(APIError) as e:
        limiter.check("a")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"


def test_keys_are_stored_hashed_and_can_be_revoked(tmp_path: Path) -> None:
    conn = open_gateway_store(tmp_path / "s.sqlite")
    key = new_key()
    kid = add_key(conn, key, "alice")
    assert add_key(conn, key) == kid
    assert active_key_hashes(conn) == {key_hash(key): kid}
    assert key.encode() not in (tmp_path / "s.sqlite").read_bytes()
    assert revoke_key(conn, kid) and active_key_hashes(conn) == {}
    with pytest.raises(ValueError, match="at least 16"):
        add_key(conn, "short")


def test_max_tokens_limit() -> None:
    assert check_max_tokens(None, 100, 50) == 50
    assert check_max_tokens(100, 100, 50) == 100
    with pytest.raises(APIError, match="at most 100") as e:
        check_max_tokens(101, 100, 50)
    assert e.value.param == "max_tokens" and e.value.status == 400


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        GatewayConfig(rate_per_s=0)
    with pytest.raises(ValueError, match="admin key"):
        GatewayConfig(admin_key="short")
    assert GatewayConfig(max_tokens_limit=10).default_max_tokens == 10


@pytest.mark.parametrize("answer, score", [
    ("0.8", 0.8), ("Rating: 0.25\nIt is a refusal.", 0.25), ("80%", 0.8), ("8/10", 0.8),
    ("score = 1", 1.0), ("safe", 0.0), ("unsafe\nS9", 1.0), ("**0.7** because", 0.7),
    ("I rate it 7 out of 10", None), ("I cannot rate this.", None), ("", None),
])
def test_judge_answers_are_parsed_or_left_undetermined(answer: str, score) -> None:
    assert parse_rating(answer, "0-1") == score


@pytest.mark.parametrize("answer, score", [
    ("Rating: [[7]]", 6 / 9), ("7/10", 6 / 9), ("score: 0.7", 0.7), ("**10**", 1.0),
    ("1", 0.0), ("unsafe\nS1", 1.0), ("Rating: [[12]]", None), ("no idea", None),
])
def test_the_red_team_scale_reads_one_to_ten(answer: str, score) -> None:
    assert parse_rating(answer, "1-10") == (None if score is None else pytest.approx(score))
    with pytest.raises(ValueError, match="unknown rating scale"):
        parse_rating(answer, "1-5")


def test_since_accepts_ages_and_iso_times() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now).startswith("2026-01-02T10:00:00")
    assert parse_since("1d", now).startswith("2026-01-01T12:00:00")
    assert parse_since("2026-01-01T08:00").startswith("2026-01-01T08:00:00")
    assert parse_since("all") is None
    with pytest.raises(ValueError, match="30m, 2h or 7d"):
        parse_since("last tuesday")
