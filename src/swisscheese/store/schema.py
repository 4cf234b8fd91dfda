"""Every table of the store, in one place, as SQLAlchemy Core tables.

The column types are the portable ones (text, integer, float), so one definition and one
migration path serve SQLite and PostgreSQL alike: times are ISO 8601 text in UTC (they
sort and compare as strings), flags are 0/1 integers and JSON documents are text. The
SQLite files of earlier releases have exactly these tables.

Each component's migrations (see `swisscheese.store.engine.migrate`) are listed at the
bottom, oldest first. Never edit a released migration: append one.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

from swisscheese.store.engine import Migration, add_columns, create_tables

metadata = MetaData()

# ---- the gateway -------------------------------------------------------------------------
gateway_decisions = Table(
    "gateway_decisions", metadata,
    Column("id", Text, primary_key=True),
    Column("created", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("key_id", Text),
    Column("model", Text),
    Column("stream", Integer, nullable=False, server_default="0"),
    Column("status", Text, nullable=False),
    Column("blocked", Integer, nullable=False, server_default="0"),
    Column("layer", Text),
    Column("input_score", Float),
    Column("output_score", Float),
    Column("error", Text),
    Column("bundle_version", Integer),
    Column("produced_chars", Integer, nullable=False, server_default="0"),
    Column("released_chars", Integer, nullable=False, server_default="0"),
    Column("hold_back", Integer),
    Column("finish_reason", Text),
    Column("latency_ms", Text, nullable=False, server_default="{}"),
    Column("conversation", Text, nullable=False),
    Column("reply", Text, nullable=False, server_default=""),
    Column("sent", Text, nullable=False, server_default=""),
    # Per-category scores of the input (JSON object: category id -> score), where the
    # bundle has a category scorer; NULL otherwise and in rows written before.
    Column("categories", Text),
    # Which stage of a cascade decided each layer (JSON object: "input"/"output" -> 1 or
    # 2), where the bundle's classifiers are cascades; NULL otherwise and in older rows.
    Column("stages", Text),
    Index("gateway_decisions_created", "created"),
)

gateway_deployments = Table(
    "gateway_deployments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("version", Integer),
    Column("previous_version", Integer),
    Column("error", Text),
    sqlite_autoincrement=True,
)

gateway_keys = Table(
    "gateway_keys", metadata,
    Column("key_id", Text, primary_key=True),
    Column("sha256", Text, nullable=False, unique=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created", Text, nullable=False),
    Column("revoked", Integer, nullable=False, server_default="0"),
)

gateway_monitor_scores = Table(
    "gateway_monitor_scores", metadata,
    Column("decision_id", Text, nullable=False),
    Column("judge", Text, nullable=False),
    Column("created", Text, nullable=False),
    Column("score", Float),
    Column("reason", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("decision_id", "judge"),
)

# One row per gateway worker process, refreshed by its heartbeat: what /healthz reports
# for the whole fleet.
gateway_workers = Table(
    "gateway_workers", metadata,
    Column("worker_id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", Text, nullable=False),
    Column("heartbeat", Float, nullable=False),  # unix time of the last beat
    Column("bundle_version", Integer),
    Column("deployment_id", Integer),
    Column("stopped", Integer, nullable=False, server_default="0"),
)

# The token buckets of the rate limit, shared by every worker on the store.
gateway_rate_buckets = Table(
    "gateway_rate_buckets", metadata,
    Column("who", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),  # unix time
    Column("taken", Integer, nullable=False, server_default="0"),
)

# ---- the red team ------------------------------------------------------------------------
campaign_runs = Table(
    "campaign_runs", metadata,
    Column("run_id", Text, primary_key=True),
    Column("created", Text, nullable=False),
    Column("config_hash", Text, nullable=False),
    Column("config", Text, nullable=False),
)

campaign_attempts = Table(
    "campaign_attempts", metadata,
    Column("run_id", Text, ForeignKey("campaign_runs.run_id"), nullable=False),
    Column("behaviour_id", Text, nullable=False),
    Column("attack", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("variant", Text, nullable=False),
    Column("sample", Integer, nullable=False),
    Column("family", Text, nullable=False, server_default=""),
    Column("level", Integer),
    Column("conversation", Text, nullable=False),
    Column("response", Text, nullable=False, server_default=""),
    Column("score", Float),
    Column("label", Text),
    Column("reason", Text),
    Column("error", Text),
    Column("seconds", Float, nullable=False, server_default="0"),
    Column("meta", Text, nullable=False, server_default="{}"),
    Column("created", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "behaviour_id", "attack", "target", "variant", "sample"),
)

campaign_units = Table(
    "campaign_units", metadata,
    Column("run_id", Text, ForeignKey("campaign_runs.run_id"), nullable=False),
    Column("behaviour_id", Text, nullable=False),
    Column("attack", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("created", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "behaviour_id", "attack", "target"),
)

campaign_references = Table(
    "campaign_references", metadata,
    Column("run_id", Text, ForeignKey("campaign_runs.run_id"), nullable=False),
    Column("hazard_id", Text, nullable=False),
    Column("answer", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "hazard_id"),
)

# ---- the challenge page ------------------------------------------------------------------
challenge_attempts = Table(
    "challenge_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("player", Text, nullable=False),
    Column("level", Integer, nullable=False),
    Column("hazard_id", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("template", Text, nullable=False),
    Column("template_hash", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("detail_score", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("blocked_layer", Text),
    Column("bundle_version", Integer),
    Column("created", Text, nullable=False),
    Index("challenge_attempts_player", "player", "level"),
    Index("challenge_attempts_template", "template_hash", "passed"),
    sqlite_autoincrement=True,
)

challenge_universal = Table(
    "challenge_universal", metadata,
    Column("template_hash", Text, primary_key=True),
    Column("template", Text, nullable=False),
    Column("levels", Text, nullable=False),
    Column("players", Text, nullable=False),
    Column("first_flagged", Text, nullable=False),
    Column("updated", Text, nullable=False),
)

# ---- reported jailbreaks ------------------------------------------------------------------
# What players (the challenge's report button) and operators (the gateway's admin API)
# report as getting through; rapid response turns the open ones into the next bundle and
# marks them patched with its version.
jailbreak_reports = Table(
    "jailbreak_reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created", Text, nullable=False),
    Column("source", Text, nullable=False),  # "challenge" | "admin"
    Column("reporter", Text),  # the player id, or the admin's label
    Column("prompt", Text, nullable=False),
    Column("response", Text),
    Column("conversation", Text, nullable=False, server_default="[]"),
    Column("note", Text, nullable=False, server_default=""),
    Column("level", Integer),
    Column("hazard_id", Text),
    Column("attempt_id", Integer, unique=True),  # the challenge attempt, once per attempt
    Column("detail_score", Float),
    Column("bundle_version", Integer),  # the bundle it got through
    Column("status", Text, nullable=False, server_default="open"),
    Column("patched_version", Integer),
    Column("resolved", Text),
    Index("jailbreak_reports_status", "status", "id"),
    sqlite_autoincrement=True,
)

# ---- the text-to-image red team ------------------------------------------------------------
t2i_runs = Table(
    "t2i_runs", metadata,
    Column("run_id", Text, primary_key=True),
    Column("created", Text, nullable=False),
    Column("config_hash", Text, nullable=False),
    Column("config", Text, nullable=False),
)

# One candidate prompt of a loop: blocked by a prompt filter, or rendered and judged.
t2i_queries = Table(
    "t2i_queries", metadata,
    Column("run_id", Text, ForeignKey("t2i_runs.run_id"), nullable=False),
    Column("loop", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("thread", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("parent", Text),
    Column("blocked", Integer, nullable=False),
    Column("filters", Text, nullable=False),
    Column("images", Integer, nullable=False),
    Column("verdicts", Text, nullable=False),
    Column("success", Integer, nullable=False),
    Column("score", Float),
    Column("guidance", Text, nullable=False, server_default=""),
    Column("created", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "loop", "category", "seq"),
)

# Results of the later stages (re-renders, transfer, the judge check, the guard).
t2i_stages = Table(
    "t2i_stages", metadata,
    Column("run_id", Text, ForeignKey("t2i_runs.run_id"), nullable=False),
    Column("stage", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("created", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "stage", "key"),
)

# PNG bytes of the images the report shows.
t2i_images = Table(
    "t2i_images", metadata,
    Column("run_id", Text, ForeignKey("t2i_runs.run_id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("png", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
)

# ---- migrations, per component, oldest first -----------------------------------------------
MIGRATIONS: dict[str, list[Migration]] = {
    "gateway-decisions": [create_tables(gateway_decisions),
                          add_columns(gateway_decisions, "categories"),
                          add_columns(gateway_decisions, "stages")],
    "gateway-deployments": [create_tables(gateway_deployments)],
    "gateway-keys": [create_tables(gateway_keys)],
    "gateway-monitor": [create_tables(gateway_monitor_scores)],
    "gateway-workers": [create_tables(gateway_workers)],
    "gateway-rate-limits": [create_tables(gateway_rate_buckets)],
    "redteam-campaigns": [create_tables(campaign_runs, campaign_attempts, campaign_units,
                                        campaign_references)],
    "challenge": [create_tables(challenge_attempts, challenge_universal)],
    "jailbreak-reports": [create_tables(jailbreak_reports)],
    "t2i-redteam": [create_tables(t2i_runs, t2i_queries, t2i_stages, t2i_images)],
}

GATEWAY = ("gateway-decisions", "gateway-deployments", "gateway-keys", "gateway-monitor",
           "gateway-workers", "gateway-rate-limits", "jailbreak-reports")


def components(*names: str) -> dict[str, list[Migration]]:
    """The migrations of the named components (what a store opener passes to migrate)."""
    return {n: MIGRATIONS[n] for n in names}
