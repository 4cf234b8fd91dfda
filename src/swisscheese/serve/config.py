"""The gateway's configuration: one dataclass, every field with its help text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swisscheese.store.engine import is_url

DEFAULT_MODEL = "runs/demo/organism/aligned"
DEFAULT_STORE = "runs/gateway/gateway.sqlite"


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    # Any: the dataclass field's declared type is what the caller annotates.
    return field(default=default, metadata={"help": help})


@dataclass
class GatewayConfig:
    """Everything `create_app` needs; `swisscheese serve` fills it from its options."""

    model: str | None = _f(None, "Local HF model directory (default: the demo organism, "
                           f"{DEFAULT_MODEL}); with `upstream`, the upstream model id "
                           "(default: the first it lists).")
    bundle: Path | None = _f(None, "Guard bundle directory; None serves without classifier "
                             "layers (a plain OpenAI-compatible server).")
    upstream: str | None = _f(None, "OpenAI-compatible base URL to guard instead of a local "
                              "model (proxy mode).")
    upstream_key: str | None = _f(None, "API key sent to the upstream.")
    upstream_timeout_s: float = _f(60.0, "Upstream request timeout.")
    upstream_retries: int = _f(1, "Retries of a failed upstream call before the request "
                               "fails with 502.")
    served_name: str | None = _f(None, "Model id clients ask for (default: the model's "
                                 "name).")
    store: Path | str = _f(Path(DEFAULT_STORE), "The store of decisions, keys and "
                           "deployments: a SQLite file, or a database URL "
                           "(postgresql+psycopg://...) that several workers share.")
    api_keys: list[str] = field(default_factory=list, metadata={
        "help": "Client API keys (stored hashed). With none here and none in the store, the "
                "API is open."})
    admin_key: str | None = _f(None, "Key of the admin endpoints; None disables "
                               "them.")
    max_body_bytes: int = _f(1 << 20, "Largest request body accepted.")
    max_tokens_limit: int = _f(1024, "Largest max_tokens a client may ask "
                               "for.")
    default_max_tokens: int = _f(256, "max_tokens when the request gives "
                                 "none.")
    rate_per_s: float = _f(10.0, "Sustained requests per second per key (token "
                           "bucket).")
    rate_burst: int = _f(20, "Bucket size: requests a key may send at once.")
    input_layer: bool = _f(True, "Run the input classifier.")
    output_layer: bool = _f(True, "Run the streaming output classifier.")
    hold_back: int = _f(32, "Characters the output layer holds back before "
                        "release.")
    # Calm release by default: on the organism v2 exchange bundle it keeps the stop rate
    # before 25% of key details at 1.000 while 98.6% of harmless replies stream without
    # the window's delay (benchmarks/calm_release.py; issue 13).
    calm_below: float | None = _f(0.5, "Fraction of the output threshold below which a "
                                  "reply streams without the hold-back window (0 or None: "
                                  "always hold back).")
    refusal: str = _f("I can't help with that request.", "Text sent in place of a blocked "
                      "reply.")
    classifier_timeout_s: float = _f(2.0, "Budget of one classifier call; a call that "
                                     "exceeds it blocks (fail closed).")
    max_concurrent_generations: int = _f(8, "Model streams running at once; more wait "
                                         "their turn.")
    challenge: bool = _f(True, "Mount the challenge page at /challenge when "
                         "available.")
    references: Path | None = _f(None, "JSON file of helpful-only reference answers (hazard "
                                 "id -> text) for the challenge grader.")
    shared_limits: bool = _f(False, "Keep the rate-limit buckets in the store, shared by every "
                             "worker on it (else in this process's memory).")
    follow_from: int | None = _f(None, "Serve the store's newest deployment with at least this "
                                 "id (set by `serve --workers` for its workers, so a restarted "
                                 "worker serves the current bundle); None: the bundle given "
                                 "here, then deployments made after the start.")
    sync_interval_s: float = _f(0.25, "How often a worker reads the store for new keys, "
                                "revocations and deployments, and beats its heartbeat.")

    def __post_init__(self) -> None:
        if not is_url(self.store):
            self.store = Path(self.store)
        if self.bundle is not None:
            self.bundle = Path(self.bundle)
        if self.references is not None:
            self.references = Path(self.references)
        checks = [
            (self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024"),
            (self.max_tokens_limit >= 1, "max_tokens_limit must be at least 1"),
            (self.default_max_tokens >= 1, "default_max_tokens must be at least 1"),
            (self.rate_per_s > 0, "rate_per_s must be > 0"),
            (self.rate_burst >= 1, "rate_burst must be at least 1"),
            (self.hold_back >= 0, "hold_back must be >= 0"),
            (self.calm_below is None or 0.0 <= self.calm_below <= 1.0,
             "calm_below must be a fraction of the output threshold in [0, 1]"),
            (self.classifier_timeout_s > 0, "classifier_timeout_s must be > 0"),
            (self.max_concurrent_generations >= 1, "max_concurrent_generations must be >= 1"),
            (self.upstream_retries >= 0, "upstream_retries must be >= 0"),
            (self.sync_interval_s > 0, "sync_interval_s must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"gateway config: {message}")
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens_limit)
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise ValueError("gateway config: the admin key must be at least 16 characters")
