"""Campaign configs: dataclasses with help text, read from YAML, checked before anything runs.

A config file looks like this (paths are relative to the working directory, as on the
command line):

    name: tiny                       # the run id in the store
    base: runs/demo/organism         # organism directory for the built-in targets
    bundle: runs/classifier/bundle   # guard bundle for guarded targets and the classifier judge
    judge: detail                    # or {name: llm, options: {judge_model: URL}}
    behaviours:
      - world: levels                # levels | hazards | all | lookalikes
      - world: hazards
        limit: 8
      - file: ../shared/datasets/advbench/harmful_behaviors.csv
        limit: 20
    attacks:
      - plain
      - name: mismatched_generalization
        options: {families: [rot13, other_language]}
      - {name: best_of_n, as: bon-roleplay, options: {base: roleplay, n: 4}}
    targets:
      - aligned
      - aligned+input+output
      - {name: gateway, model: "http://127.0.0.1:8000/v1#organism"}
      - {name: aligned+input+exchange, model: aligned, guard: input+output,
         bundle: runs/classifier-exchange/bundle}   # a second bundle, its own arm
    overrefusal: 32                  # look-alikes sent to every target
    concurrency: 2
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from swisscheese.redteam.base import ATTACKS, JUDGES
from swisscheese.redteam.behaviours import WORLD_SETS
from swisscheese.redteam.targets import TargetSpec


class ConfigError(ValueError):
    """A campaign config that cannot run; names the file and the key."""


@dataclass
class PluginSpec:
    """An attack or judge by registered name, with constructor options. `label` names the
    attack in the store and the reports (default: the name); use it to run one attack
    twice with different options."""

    name: str = field(metadata={"help": "Registered name."})
    options: dict[str, Any] = field(default_factory=dict,
                                    metadata={"help": "Constructor keyword arguments."})
    label: str | None = field(default=None, metadata={"help": "Name in the store."})

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class BehaviourSource:
    """A set of the world's behaviours (`world`) or a JSONL/CSV file (`file`)."""

    world: str | None = field(default=None, metadata={"help": f"One of {WORLD_SETS}."})
    file: str | None = field(default=None, metadata={"help": "A JSONL or CSV file."})
    limit: int | None = field(default=None, metadata={"help": "Keep at most this many."})


@dataclass
class CampaignConfig:
    """Behaviours x attacks x targets, one judge."""

    name: str = field(default="campaign", metadata={"help": "Run id in the store."})
    behaviours: list[BehaviourSource] = field(
        default_factory=lambda: [BehaviourSource(world="all")],
        metadata={"help": "Where the behaviours come from."})
    attacks: list[PluginSpec] = field(default_factory=list,
                                      metadata={"help": "Attacks, by registered name."})
    targets: list[TargetSpec] = field(default_factory=list,
                                      metadata={"help": "Targets, built-in or with `model`."})
    judge: PluginSpec = field(default_factory=lambda: PluginSpec("detail"),
                              metadata={"help": "The judge, by registered name."})
    base: str | None = field(default=None, metadata={
        "help": "Organism directory (helpful-only/, aligned/) for the built-in targets."})
    bundle: str | None = field(default=None, metadata={
        "help": "Guard bundle directory for guarded targets and the classifier judge."})
    reference: str | None = field(default=None, metadata={
        "help": "Helpful-only model whose answers the detail grader compares with "
                "(default: BASE/helpful-only when base is set, else the ground truth)."})
    helper_model: str | None = field(default=None, metadata={
        "help": "Model spec given to attacks and judges that need an attacker or judge LLM."})
    world_seed: int = field(default=0, metadata={"help": "Seed of the world."})
    seed: int = field(default=0, metadata={"help": "Seed of the attacks' random choices."})
    overrefusal: int = field(default=0, metadata={
        "help": "Look-alikes sent plainly to every target to measure over-refusal (0: off)."})
    concurrency: int = field(default=1, metadata={
        "help": "Worker threads (in-process models still take one call at a time)."})
    threads: int = field(default=1, metadata={
        "help": "Torch threads for in-process models (0: torch's default). One thread per "
                "call is fastest for small models, and idle extra threads spin on a busy "
                "machine; use `concurrency` to keep several cores busy."})
    batch_size: int = field(default=32, metadata={
        "help": "Prompts per batched model call for prompt attacks."})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        """What decides the results: everything but the concurrency and threads."""
        d = self.to_dict()
        d.pop("concurrency")
        d.pop("threads")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def validate(self) -> None:
        """Names and shapes; raises ConfigError (unknown names list the registered ones)."""
        try:
            if not self.attacks:
                raise ConfigError("attacks: give at least one attack")
            if not self.targets:
                raise ConfigError("targets: give at least one target")
            if not self.behaviours:
                raise ConfigError("behaviours: give at least one source")
            for i, a in enumerate(self.attacks):
                ATTACKS.get_class(a.name)
                if a.key == OVERREFUSAL_LABEL:
                    raise ConfigError(f"attacks[{i}]: the label {OVERREFUSAL_LABEL!r} is "
                                      "reserved for the over-refusal probe")
            labels = [a.key for a in self.attacks]
            dups = sorted({x for x in labels if labels.count(x) > 1})
            if dups:
                raise ConfigError(f"attacks: {', '.join(dups)} appear(s) twice; give each "
                                  "a distinct `label`")
            JUDGES.get_class(self.judge.name)
            names = [t.name for t in self.targets]
            dups = sorted({x for x in names if names.count(x) > 1})
            if dups:
                raise ConfigError(f"targets: {', '.join(dups)} appear(s) twice")
            for t in self.targets:
                t.validate()
            for i, b in enumerate(self.behaviours):
                if (b.world is None) == (b.file is None):
                    raise ConfigError(f"behaviours[{i}]: give exactly one of `world` or `file`")
                if b.world is not None and b.world not in WORLD_SETS:
                    raise ConfigError(f"behaviours[{i}].world: unknown set {b.world!r}; "
                                      f"choose one of {', '.join(WORLD_SETS)}")
                if b.limit is not None and b.limit < 0:
                    raise ConfigError(f"behaviours[{i}].limit must be >= 0")
            for key in ("concurrency", "batch_size"):
                if getattr(self, key) < 1:
                    raise ConfigError(f"{key} must be >= 1")
            if self.threads < 0:
                raise ConfigError("threads must be >= 0")
            if self.overrefusal < 0:
                raise ConfigError("overrefusal must be >= 0")
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(str(e)) from None


OVERREFUSAL_LABEL = "overrefusal"


# ---- reading ----------------------------------------------------------------------------
def _plugin(where: str, raw: Any) -> PluginSpec:
    if isinstance(raw, str):
        return PluginSpec(raw)
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{where}: expected a name or a mapping with `name`, got {raw!r}")
    unknown = set(raw) - {"name", "options", "as", "label"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; keys: "
                          "name, options, label")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options: expected a mapping, got {options!r}")
    label = raw.get("label", raw.get("as"))
    return PluginSpec(str(raw["name"]), dict(options), None if label is None else str(label))


def _target(where: str, raw: Any) -> TargetSpec:
    if isinstance(raw, str):
        return TargetSpec(raw)
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{where}: expected a name or a mapping with `name`, got {raw!r}")
    unknown = set(raw) - {"name", "model", "guard", "bundle"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; keys: "
                          "name, model, guard, bundle")
    model, bundle = raw.get("model"), raw.get("bundle")
    return TargetSpec(str(raw["name"]), None if model is None else str(model), raw.get("guard"),
                      None if bundle is None else str(bundle))


def _source(where: str, raw: Any) -> BehaviourSource:
    if isinstance(raw, str):
        return BehaviourSource(world=raw) if raw in WORLD_SETS else BehaviourSource(file=raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with `world` or `file`, got {raw!r}")
    unknown = set(raw) - {"world", "file", "limit"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; keys: "
                          "world, file, limit")
    return BehaviourSource(raw.get("world"), raw.get("file"), raw.get("limit"))


def _list(where: str, raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list, got {raw!r}")
    return raw


def config_from_dict(data: dict[str, Any], where: str = "config") -> CampaignConfig:
    known = {f.name for f in fields(CampaignConfig)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(sorted(known))}")
    kw: dict[str, Any] = {}
    for key, value in data.items():
        if key == "attacks":
            kw[key] = [_plugin(f"{where}: attacks[{i}]", a)
                       for i, a in enumerate(_list(f"{where}: attacks", value))]
        elif key == "targets":
            kw[key] = [_target(f"{where}: targets[{i}]", t)
                       for i, t in enumerate(_list(f"{where}: targets", value))]
        elif key == "behaviours":
            kw[key] = [_source(f"{where}: behaviours[{i}]", b)
                       for i, b in enumerate(_list(f"{where}: behaviours", value))]
        elif key == "judge":
            kw[key] = _plugin(f"{where}: judge", value)
        elif key in ("world_seed", "seed", "overrefusal", "concurrency", "batch_size",
                     "threads"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
            kw[key] = value
        else:
            kw[key] = None if value is None else str(value)
    cfg = CampaignConfig(**kw)
    try:
        cfg.validate()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return cfg


def load_config(path: str | Path) -> CampaignConfig:
    """A campaign config from YAML; ConfigError names the file and the key."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return config_from_dict(data, str(p))
