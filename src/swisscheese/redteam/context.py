"""What attacks and judges may need besides their own options, and how they get it.

A campaign builds every plugin with `build_plugin(registry, name, ctx, options)`: the
options from the config go to the constructor as keyword arguments, and any other
constructor parameter whose name the context provides (`world`, `grader`, `references`,
`bundle`, `seed`, and the helper model under `attacker`, `attacker_model` or
`judge_model`) is filled in from the context. A plugin therefore declares what it needs
in its signature and nothing else; a missing requirement is a clear error.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swisscheese.models.base import ChatModel
from swisscheese.registry import Registry
from swisscheese.world.core import World
from swisscheese.world.grader import Grader

if TYPE_CHECKING:
    from swisscheese.bundles import GuardBundle

# Constructor parameter names that receive the helper model (an attacker or a judge LLM).
MODEL_ROLES = ("attacker", "attacker_model", "judge_model")


@dataclass
class RedteamContext:
    """Shared, lazily built dependencies of a campaign's plugins.

    `references` maps hazard id to the helpful-only model's answer (the detail grader's
    yardstick; None: the ground truth). `bundle_loader` loads the guard bundle the first
    time a plugin asks for it. `helper_model` is the default attacker / judge LLM.
    `load_model` turns a model spec (an HF directory or an OpenAI-compatible URL) from a
    plugin's options into a ChatModel.
    """

    world: World = field(default_factory=lambda: World(seed=0))
    references: Mapping[str, str] | None = None
    bundle_loader: Callable[[], GuardBundle] | None = None
    helper_model: ChatModel | None = None
    load_model: Callable[[str], ChatModel] | None = None
    seed: int = 0
    _grader: Grader | None = field(default=None, repr=False)
    _bundle: GuardBundle | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def grader(self) -> Grader:
        with self._lock:
            if self._grader is None:
                self._grader = Grader(self.world, self.references)
            return self._grader

    @property
    def bundle(self) -> GuardBundle:
        with self._lock:
            if self._bundle is None:
                if self.bundle_loader is None:
                    raise ValueError("no guard bundle was given (set `bundle` in the config "
                                     "or pass --bundle)")
                self._bundle = self.bundle_loader()
            return self._bundle

    def provides(self, name: str) -> bool:
        if name in MODEL_ROLES:
            return self.helper_model is not None
        if name == "bundle":
            return self.bundle_loader is not None or self._bundle is not None
        return name in ("world", "grader", "references", "seed")

    def provide(self, name: str) -> Any:
        if name in MODEL_ROLES:
            return self.helper_model
        return getattr(self, name)


def _model_option(ctx: RedteamContext, where: str, value: Any) -> Any:
    """A model option given as a spec string becomes a ChatModel."""
    if isinstance(value, str):
        if ctx.load_model is None:
            raise ValueError(f"{where}: cannot load model {value!r} here")
        return ctx.load_model(value)
    return value


def plugin_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a plugin's constructor (self and *args/**kwargs left out)."""
    sig = inspect.signature(cls)
    return {n: p for n, p in sig.parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def build_plugin(registry: Registry, name: str, ctx: RedteamContext,
                 options: Mapping[str, Any] | None = None) -> Any:
    """An instance of the plugin `name` with `options`, the rest injected from `ctx`.

    Raises KeyError listing the registered names for an unknown plugin, and ValueError
    naming the option for an unknown option or a requirement the context cannot meet.
    """
    cls = registry.get_class(name)
    params = plugin_parameters(cls)
    accepts_any = any(p.kind is p.VAR_KEYWORD
                      for p in inspect.signature(cls.__init__).parameters.values())
    where = f"{registry.kind} {name!r}"
    kwargs: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in params and not accepts_any:
            raise ValueError(f"{where}: unknown option {key!r}; options: "
                             f"{', '.join(sorted(params)) or '(none)'}")
        kwargs[key] = _model_option(ctx, f"{where} option {key!r}", value) \
            if key in (*MODEL_ROLES, "model") else value
    for pname, p in params.items():
        if pname in kwargs:
            continue
        if ctx.provides(pname):
            kwargs[pname] = ctx.provide(pname)
        elif p.default is inspect.Parameter.empty:
            raise ValueError(f"{where} needs {pname!r}: give it in the {registry.kind}'s "
                             "options")
    return cls(**kwargs)
