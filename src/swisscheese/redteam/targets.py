"""Targets: the models a campaign attacks, named in its config.

Built-in names resolve against an organism directory (`base`, with `helpful-only/` and
`aligned/`) and a guard bundle: `helpful-only`, `aligned`, `aligned+input`,
`aligned+output` (the output layer alone) and `aligned+input+output` (the aligned model
behind the guard in-process, through `GuardedChatModel`), so that a campaign shows each
layer's holes. Any other target gives `model`: a local HF directory, an OpenAI-compatible
URL (`http://host:port/v1#model-id`, our own gateway included), or `helpful-only` /
`aligned` (that checkpoint under `base`), optionally with `guard` layers. A target may
name its own guard `bundle` (a second bundle beside the campaign's: the exchange
classifier against the reply-only one, say). Loading happens lazily, once per model spec
and once per bundle, so the guarded targets share one copy of the aligned model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swisscheese.models.base import ChatModel

if TYPE_CHECKING:
    from swisscheese.bundles import GuardBundle

GUARD_LAYERS = ("input", "output")
# name -> (model directory under `base`, guard layers)
BUILTIN_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "helpful-only": ("helpful-only", ()),
    "aligned": ("aligned", ()),
    "aligned+input": ("aligned", ("input",)),
    "aligned+output": ("aligned", ("output",)),
    "aligned+input+output": ("aligned", ("input", "output")),
}
# Organism checkpoints a target's `model` may name (resolved under `base`).
CHECKPOINTS = ("helpful-only", "aligned")


@dataclass(frozen=True)
class TargetSpec:
    """One target of a campaign.

    `model`: an HF directory, an OpenAI-compatible URL, or an organism checkpoint name
    (`helpful-only`, `aligned`) under `base`; None for a built-in name.
    `guard`: the guard layers to put in front ("input", "output", "input+output").
    `bundle`: this target's own guard bundle (default: the campaign's).
    """

    name: str
    model: str | None = None
    guard: str | None = None
    bundle: str | None = None

    def layers(self) -> tuple[str, ...]:
        if self.model is None and self.name in BUILTIN_TARGETS:
            return BUILTIN_TARGETS[self.name][1]
        if not self.guard:
            return ()
        layers = tuple(x.strip() for x in self.guard.split("+") if x.strip())
        bad = [x for x in layers if x not in GUARD_LAYERS]
        if bad:
            raise ValueError(f"target {self.name!r}: unknown guard layer(s) "
                             f"{', '.join(bad)}; choose from {', '.join(GUARD_LAYERS)}")
        return layers

    def validate(self) -> None:
        """Fail for an unknown built-in name (listing the registered ones) or bad layers."""
        if self.model is None and self.name not in BUILTIN_TARGETS:
            raise KeyError(f"unknown target {self.name!r}; registered: "
                           f"{', '.join(BUILTIN_TARGETS)} (or give `model`: an HF directory "
                           "or an OpenAI-compatible URL)")
        self.layers()

    def model_spec(self, base: str | Path | None) -> str:
        variant = BUILTIN_TARGETS[self.name][0] if self.model is None else self.model
        if self.model is not None and self.model not in CHECKPOINTS:
            return self.model
        if base is None:
            raise ValueError(f"target {self.name!r} needs the organism directory: set `base` "
                             "in the config or pass --base")
        return str(Path(base) / variant)


def is_local(spec: str) -> bool:
    from swisscheese.models import backend_for

    return backend_for(spec) != "openai"


class TargetPool:
    """Loads targets on first use and keeps them; one lock per in-process model.

    In-process models take their calls one at a time: torch already spreads one call over
    every core, and sampling seeds are process-wide, so two calls at once would only make
    results depend on timing. Endpoints take concurrent calls.
    """

    def __init__(self, base: str | Path | None = None,
                 bundle_loader: Callable[[], GuardBundle] | None = None,
                 load: Callable[..., ChatModel] | None = None) -> None:
        self.base = base
        self.bundle_loader = bundle_loader
        self._load = load
        self._models: dict[str, ChatModel] = {}
        self._bundles: dict[str, GuardBundle] = {}
        self._targets: dict[str, ChatModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def model(self, spec: str) -> ChatModel:
        """The bare model of `spec`, loaded once."""
        with self._lock:
            if spec not in self._models:
                if self._load is not None:
                    self._models[spec] = self._load(spec)
                else:
                    from swisscheese.models import load_model

                    self._models[spec] = load_model(spec)
                self._locks[spec] = threading.Lock()
            return self._models[spec]

    def get(self, target: TargetSpec) -> ChatModel:
        """The ChatModel for `target` (raises the backend's ModelError when it cannot load)."""
        if target.name in self._targets:
            return self._targets[target.name]
        spec = target.model_spec(self.base)
        model = self.model(spec)
        layers = target.layers()
        if layers:
            from swisscheese.guard.pipeline import Guard, GuardedChatModel

            guard = Guard(self.bundle(target), input_layer="input" in layers,
                          output_layer="output" in layers)
            model = GuardedChatModel(model, guard, name=target.name)
        with self._lock:
            self._targets[target.name] = model
        return model

    def bundle(self, target: TargetSpec) -> GuardBundle:
        """The guard bundle of `target`: its own, loaded once per path, else the campaign's."""
        if target.bundle is None:
            if self.bundle_loader is None:
                raise ValueError(f"target {target.name!r} needs a guard bundle: set `bundle` "
                                 "in the config (or on the target) or pass --bundle")
            return self.bundle_loader()
        with self._lock:
            if target.bundle not in self._bundles:
                from swisscheese.bundles import load_bundle

                self._bundles[target.bundle] = load_bundle(target.bundle)
            return self._bundles[target.bundle]

    def lock(self, target: TargetSpec) -> AbstractContextManager[object]:
        spec = target.model_spec(self.base)
        if not is_local(spec):
            return nullcontext()
        with self._lock:
            return self._locks.setdefault(spec, threading.Lock())
