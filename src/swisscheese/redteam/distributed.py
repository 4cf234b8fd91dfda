"""A campaign's units of work on Ray actors.

Each actor builds the campaign from its config (behaviours, plugins, and its own copy of
the targets: one model per actor), takes the driver's reference answers, and runs the
units the driver sends it by key. The driver keeps the store: it writes each unit's
records as they come back, exactly as the in-process path does, so results, resume and
the store are the same whichever path ran them. Every model call is seeded and the
batches are a fixed partition of the plan, so which actor ran a unit does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from swisscheese.store.campaigns import AttemptRecord

if TYPE_CHECKING:
    from swisscheese.redteam.campaign import Campaign, Work
    from swisscheese.redteam.config import CampaignConfig


class CampaignWorker:
    """The campaign inside one actor process."""

    def __init__(self, campaign_cls: type[Campaign], cfg: CampaignConfig,
                 references: Mapping[str, str] | None) -> None:
        import tempfile

        # The actor writes nothing; the out directory is only a constructor argument.
        self.campaign = campaign_cls(cfg, tempfile.gettempdir())
        if references is not None:
            self.campaign.use_references(dict(references))
        self.campaign.set_threads()
        work, _ = self.campaign.plan_from(set(), set())
        self.work = {w.key: w for w in work}

    def execute(self, key: tuple[str, str, str]) -> list[AttemptRecord]:
        return self.campaign.execute(self.work[key])


def _absolute(value: str | None) -> str | None:
    from pathlib import Path

    if value and "://" not in value and Path(value).exists():
        return str(Path(value).resolve())
    return value


def absolute_paths(cfg: CampaignConfig) -> CampaignConfig:
    """`cfg` with the local paths it names made absolute: an actor's working directory
    is not the driver's. (On a cluster of several machines the paths must exist on
    every node, or the targets be endpoints.)"""
    from dataclasses import replace

    return replace(
        cfg, base=_absolute(cfg.base), bundle=_absolute(cfg.bundle),
        reference=_absolute(cfg.reference), helper_model=_absolute(cfg.helper_model),
        behaviours=[replace(b, file=_absolute(b.file)) for b in cfg.behaviours],
        targets=[replace(t, model=_absolute(t.model), bundle=_absolute(t.bundle))
                 for t in cfg.targets])


def ray_results(campaign_cls: type[Campaign], cfg: CampaignConfig,
                references: Mapping[str, str] | None, todo: list[Work],
                workers: int | None) -> Iterator[tuple[Work, list[AttemptRecord]]]:
    """Run `todo` on Ray actors, yielding (work, records) as units finish. The campaign
    class comes from the caller (the driver's `Campaign`), so this module never imports
    it back."""
    import ray

    from swisscheese.raycluster import default_workers, make_actor_class, ordered_map

    if not todo:
        return
    n = min(default_workers(workers), len(todo))
    cls = make_actor_class(CampaignWorker)
    actors = [cls.remote(campaign_cls, absolute_paths(cfg), references) for _ in range(n)]
    try:
        for i, records in ordered_map(actors, "execute", [w.key for w in todo]):
            yield todo[i], records
    finally:
        for a in actors:
            ray.kill(a)
