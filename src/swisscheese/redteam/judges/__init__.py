"""The judges, one module each, all named in the one JUDGES registry (`redteam.base`)."""

from __future__ import annotations

from swisscheese.redteam.base import JUDGES

__all__ = ["JUDGES"]
