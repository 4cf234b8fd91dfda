"""The table that records each store component's schema version (`engine.migrate` reads
and writes it; the other tables are `schema`'s)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Table, Text

schema_versions = Table(
    "schema_versions", MetaData(),
    Column("component", Text, primary_key=True),
    Column("version", Integer, nullable=False),
)
