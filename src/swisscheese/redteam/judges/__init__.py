"""The judges, one module each, all in the one JUDGES registry (importing this package
registers them)."""

from __future__ import annotations

from swisscheese.redteam.base import JUDGES
from swisscheese.redteam.judges import (  # noqa: F401  (imported to register)
    classifier,
    detail,
    llm,
    refusal,
)

__all__ = ["JUDGES"]
