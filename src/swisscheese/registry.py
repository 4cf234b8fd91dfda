"""The one plugin registry: every plugin kind (converters, classifiers, attacks, judges, model
backends, data backends, recipes, training methods, ...) is a `Registry`.

A registry maps a name to a plugin (usually a class). An entry is either the plugin itself,
added with the `register` decorator, or a lazy `"package.module:Attribute"` string, added with
`add_lazy`: the module is imported only when the entry is first asked for, so listing the
names (`swisscheese --help`, an error message) imports no backend module and no heavy
dependency. Third-party plugins can also come from the entry-point group the registry names
(``[project.entry-points."swisscheese.classifiers"] mine = "pkg.mod:Cls"``), loaded the same
lazy way.

    >>> from swisscheese.registry import Registry
    >>> class Base: name = ""
    >>> R = Registry("widget", Base)
    >>> @R.register
    ... class A(Base): name = "a"
    >>> R.add_lazy("frac", "fractions:Fraction", check=False)
    >>> R.names()
    ['a', 'frac']
    >>> R.get("b")
    Traceback (most recent call last):
    ...
    swisscheese.registry.UnknownPluginError: unknown widget 'b'; registered: a, frac

An unknown name raises `UnknownPluginError` (a `KeyError`) whose message lists the
registered names. A lazy entry that does not import, or names something of the wrong kind,
raises `PluginLoadError` naming the entry: a module that ships must import or fail loudly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")


class UnknownPluginError(KeyError):
    """A name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument (quotes and all).
        return str(self.args[0]) if self.args else ""


class PluginLoadError(ImportError):
    """A registered entry that cannot be imported or is not a plugin of this kind."""


def resolve_path(path: str) -> Any:
    """The object a `"package.module:Attribute"` path names (dots allowed after the colon)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise PluginLoadError(f"{path!r} is not a 'package.module:Attribute' path")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """name -> plugin, for one plugin kind.

    `base`: when given, every plugin must be a subclass of it (classes) or an instance of it
    (objects); `check` is an extra validator called on each plugin as it is resolved.
    `entry_point_group`: an `importlib.metadata` entry-point group whose entries are added
    lazily the first time the names are read.
    """

    def __init__(self, kind: str, base: type | None = None, *,
                 check: Callable[[str, Any], None] | None = None,
                 entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.base = base
        self._check = check
        self._entries: dict[str, Any] = {}
        self._lazy: dict[str, tuple[str, bool]] = {}
        self._group = entry_point_group
        self._scanned = entry_point_group is None

    # ---- adding -----------------------------------------------------------------------
    def register(self, plugin: P | None = None, *, name: str | None = None) -> Any:
        """Decorator (bare or with `name=`): add a plugin under `name` or its `name`
        attribute. Re-registering the same object is a no-op; another under a taken name
        is an error."""
        def add(p: P) -> P:
            key = name or getattr(p, "name", "")
            if not isinstance(key, str) or not key:
                raise ValueError(f"{getattr(p, '__name__', p)!r} needs a non-empty `name` to "
                                 f"be registered as a {self.kind}")
            self._validate(key, p)
            old = self._entries.get(key)
            if old is not None and old is not p:
                raise ValueError(f"{self.kind} name {key!r} is already taken by "
                                 f"{getattr(old, '__name__', old)!r}")
            if key in self._lazy and old is None:
                raise ValueError(f"{self.kind} name {key!r} is already taken by the lazy "
                                 f"entry {self._lazy[key][0]!r}")
            self._entries[key] = p
            return p

        return add if plugin is None else add(plugin)

    def add_lazy(self, name: str, path: str, *, check: bool = True) -> None:
        """Add `name` as a `"package.module:Attribute"` path imported on first use.
        `check=False` skips the base-class check (for plugins that are plain objects)."""
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        if name in self._entries or name in self._lazy:
            raise ValueError(f"{self.kind} name {name!r} is already registered")
        if ":" not in path:
            raise ValueError(f"lazy {self.kind} {name!r}: {path!r} is not a "
                             "'package.module:Attribute' path")
        self._lazy[name] = (path, check)

    # ---- reading ----------------------------------------------------------------------
    def names(self) -> list[str]:
        """The registered names, sorted; imports nothing."""
        self._scan_entry_points()
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, name: object) -> bool:
        self._scan_entry_points()
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The plugin registered as `name` (importing it if it is lazy)."""
        self._scan_entry_points()
        if name in self._entries:
            return self._entries[name]  # type: ignore[no-any-return]
        if name not in self._lazy:
            raise UnknownPluginError(f"unknown {self.kind} {name!r}; registered: "
                                     f"{', '.join(self.names()) or '(none)'}")
        path, check = self._lazy[name]
        try:
            plugin = resolve_path(path)
        except PluginLoadError:
            raise
        except (ImportError, AttributeError) as e:
            raise PluginLoadError(f"{self.kind} {name!r}: cannot import {path!r} ({e})") from e
        if check:
            self._validate(name, plugin)
        elif self._check is not None:
            self._check(name, plugin)
        self._entries[name] = plugin
        del self._lazy[name]
        return plugin  # type: ignore[no-any-return]

    # Mapping-style reads, and the red team's `build_plugin`, which says get_class.
    __getitem__ = get
    get_class = get

    def create(self, name: str, **kwargs: Any) -> Any:
        """A new instance of the plugin class `name`; kwargs go to its constructor."""
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def items(self) -> list[tuple[str, T]]:
        """(name, plugin) for every entry, resolving lazy ones (contract tests use this)."""
        return [(n, self.get(n)) for n in self.names()]

    def values(self) -> list[T]:
        return [p for _, p in self.items()]

    def unregister(self, name: str) -> None:
        """Remove `name` (tests that register a throwaway plugin clean up with it)."""
        self._entries.pop(name, None)
        self._lazy.pop(name, None)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()!r})"

    # ---- internals --------------------------------------------------------------------
    def _validate(self, name: str, plugin: Any) -> None:
        if self.base is not None:
            ok = (isinstance(plugin, type) and issubclass(plugin, self.base)) or \
                isinstance(plugin, self.base)
            if not ok:
                raise PluginLoadError(f"{self.kind} {name!r}: {plugin!r} is not a "
                                      f"{self.base.__name__}")
        own = getattr(plugin, "name", None)
        if isinstance(plugin, type) and isinstance(own, str) and own and own != name:
            raise PluginLoadError(f"{self.kind} {name!r}: {plugin.__name__}.name is {own!r}")
        if self._check is not None:
            self._check(name, plugin)

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self._group or ""):
            if ep.name not in self._entries and ep.name not in self._lazy:
                self._lazy[ep.name] = (ep.value, True)
