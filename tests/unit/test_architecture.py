"""The shape of the code: no import circle, no arrow up the dependency direction of
../shared/DESIGN.md, a CLI that starts without heavy imports, short functions, no private
names borrowed across modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "swisscheese"
MAX_FUNCTION_LINES = 80

# Each package and what it may import besides itself and the shared leaf modules. The
# chain of DESIGN.md: world, constitution <- models <- data <- classifiers <- bundles <-
# recipes <- rapid_response; bundles <- guard <- serve <- cli. redteam, training, t2i and
# interp use models, classifiers, guard and world, never serve. store is a leaf.
# raycluster connects to Ray and runs plugins on actors; it imports only models.
LEAVES = {"registry", "fileio", "progress", "clierrors", "report", "raycluster", "swisscheese"}
LOWER = {"world", "constitution", "models", "data"}
ALLOWED: dict[str, set[str]] = {
    "world": set(),
    "constitution": {"world"},
    "models": {"world", "constitution"},
    "data": {"world", "constitution", "models"},
    "classifiers": {"models", "data"},
    "bundles": {*LOWER, "classifiers"},
    "recipes": {*LOWER, "classifiers", "bundles"},
    "rapid_response": {*LOWER, "classifiers", "bundles", "recipes"},
    "guard": {*LOWER, "classifiers", "bundles"},
    "organism": {"world", "models"},
    "store": set(),
    "raycluster": {"models"},
    "interp": {*LOWER, "organism"},
    "whitebox": {*LOWER, "interp", "organism"},
    "training": {*LOWER, "classifiers", "bundles", "guard", "organism", "interp", "whitebox",
                 "redteam"},
    "redteam": {*LOWER, "classifiers", "bundles", "guard", "organism", "whitebox", "interp",
                "store"},
    "t2i": {*LOWER, "classifiers", "bundles", "guard", "redteam", "store"},
    "serve": {*LOWER, "classifiers", "bundles", "guard", "organism", "store", "redteam",
              "rapid_response", "recipes"},
    "demo": {*LOWER, "classifiers", "bundles", "recipes", "guard", "organism", "redteam",
             "t2i", "training", "interp"},
}
# What classifiers/ may not read even inside data/: the dataset builders (recipes do).
DATA_BUILDERS = {"swisscheese.data.generate", "swisscheese.data.world_backend",
                 "swisscheese.data.llm_backend"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: `if TYPE_CHECKING:` blocks are left out (they never do)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if id(n) not in skip]


@cache
def imports() -> dict[str, set[str]]:
    """Every swisscheese module each module imports at run time, function-level (lazy)
    imports included. `from pkg import submodule` is an edge to the submodule; importing a
    submodule of a package being initialised is not a circle in Python."""
    mods = modules()
    out: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if not node.module.startswith("swisscheese"):
                    continue
                subs = {f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in mods}
                names_only = len(subs) < len(node.names)
                out[name] |= subs | ({node.module} if names_only else set())
            elif isinstance(node, ast.Import):
                out[name] |= {a.name for a in node.names if a.name.startswith("swisscheese")}
    return out


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "swisscheese"


def test_no_import_circle() -> None:
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(modules()):
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_no_arrow_runs_up_the_dependency_direction() -> None:
    bad = []
    for src, targets in imports().items():
        a = package(src)
        for t in targets:
            b = package(t)
            if b == a or b in LEAVES:
                continue
            if b == "cli" or (a in ALLOWED and b not in ALLOWED[a]):
                bad.append(f"{src} -> {t}")
            if a == "classifiers" and t in DATA_BUILDERS:
                bad.append(f"{src} -> {t} (estimators know nothing of where data comes from)")
    assert not bad, "imports against DESIGN.md's dependency direction:\n" + "\n".join(bad)


def test_every_package_has_a_rule() -> None:
    packages = {package(m) for m in modules()} - LEAVES - {"cli"}
    assert packages <= set(ALLOWED), f"packages without a dependency rule: " \
                                     f"{sorted(packages - set(ALLOWED))}"


def test_the_cli_starts_without_torch_or_a_classifier_backend() -> None:
    code = ("import sys, swisscheese.cli; "
            "print('\\n'.join(m for m in sys.modules if m == 'torch' or m.startswith("
            "('torch.', 'transformers', 'swisscheese.classifiers.backends', 'fastapi', "
            "'diffusers', 'ray', 'sqlalchemy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"imported at CLI start-up: {out.stdout.split()}"


def test_functions_are_short() -> None:
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_private_name_is_imported_across_modules() -> None:
    bad = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("swisscheese"):
                bad += [f"{name}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, f"private names imported from another module: {bad}"
