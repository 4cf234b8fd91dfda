"""Load and validate a constitution file, reporting every problem with its line number.

The loader walks the node tree of `yaml.compose` rather than the plain objects of
`yaml.safe_load`, because only the nodes remember where in the file each value was.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from swisscheese.constitution.schema import WORLD_KEYS, Category, Constitution
from swisscheese.world.core import LOOKALIKE_KINDS
from swisscheese.world.hazards import CATEGORIES
from swisscheese.world.tasks import TRAIN_TASK_WEIGHTS

TOP_KEYS = ("name", "version", "description", "harmful", "harmless")
CATEGORY_KEYS = ("id", "title", "description", "world", "examples", "notes")
CATEGORY_REQUIRED = ("id", "title", "description", "examples")
SECTIONS = ("harmful", "harmless")
SLUG = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
DEFAULT_RESOURCE = "default.yaml"

_TAG = "tag:yaml.org,2002:"
_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
               "null": "nothing", "timestamp": "a date", "binary": "binary data"}
_WORLD_LABELS = {"hazard_category": "hazard category", "lookalike": "look-alike kind",
                 "utility": "utility kind"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a constitution file, at a line (None: the file as a whole)."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


class ConstitutionError(ValueError):
    """A constitution that cannot be used; `str()` is one `FILE:LINE: problem` line each.

    A ValueError, so that callers which already turn ValueErrors into one clear CLI
    message need nothing new.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def world_references() -> dict[str, tuple[str, ...]]:
    """What a category's `world` mapping may name, taken from the world generator."""
    return {
        "hazard_category": tuple(c.id for c in CATEGORIES),
        "lookalike": tuple(LOOKALIKE_KINDS),
        "utility": ("all", *TRAIN_TASK_WEIGHTS),
    }


def load_constitution(
    path: str | os.PathLike[str],
    *,
    known: Mapping[str, Collection[str]] | None = None,
) -> Constitution:
    """Read and validate a constitution YAML file; raise ConstitutionError on any problem."""
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConstitutionError([Problem(source, None, "no such file")]) from None
    except IsADirectoryError:
        raise ConstitutionError([Problem(source, None, "is a directory, not a file")]) from None
    except OSError as e:
        raise ConstitutionError([Problem(source, None, e.strerror or str(e))]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConstitutionError([Problem(source, line, "not UTF-8 text")]) from None
    return parse_constitution(text, source, known=known)


def parse_constitution(
    text: str,
    source: str = "<string>",
    *,
    known: Mapping[str, Collection[str]] | None = None,
) -> Constitution:
    """Validate constitution YAML text; `source` names it in error messages.

    `known` lists what each `world` key may refer to (default: the world generator's
    hazard categories, look-alike kinds and utility kinds).
    """
    return _Parser(source, known if known is not None else world_references()).parse(text)


def default_constitution_text() -> str:
    """The default constitution's YAML, comments included."""
    return files("swisscheese.constitution").joinpath(DEFAULT_RESOURCE).read_text("utf-8")


def default_constitution() -> Constitution:
    """The default constitution of the world: one harmful category per hazard category."""
    resource = files("swisscheese.constitution").joinpath(DEFAULT_RESOURCE)
    return parse_constitution(resource.read_text("utf-8"), str(resource))


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag.removeprefix(_TAG)
    return _TYPE_NAMES.get(tag, f"a {tag}")


def _is(node: Node, tag: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + tag


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _did_you_mean(word: str, options: Collection[str]) -> str | None:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return match[0] if match else None


class _Parser:
    """Walks one composed document, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, known: Mapping[str, Collection[str]]) -> None:
        self.source = source
        self.known = known
        self.problems: list[Problem] = []
        self.ids: dict[str, int] = {}  # category id -> line of its first definition

    def report(self, at: Node | int, message: str) -> None:
        line = at if isinstance(at, int) else _line(at)
        self.problems.append(Problem(self.source, line, message))

    def fail(self) -> ConstitutionError:
        # Problems come from several passes; the reader wants them in file order.
        return ConstitutionError(sorted(self.problems, key=lambda p: p.line or 0))

    def parse(self, text: str) -> Constitution:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            self.report(_syntax_line(e), _syntax_message(e))
            raise self.fail() from None
        except yaml.YAMLError as e:  # the reader's errors carry a position, not a mark
            pos = getattr(e, "position", 0)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.report(text[:pos].count("\n") + 1, f"cannot read YAML: {first}")
            raise self.fail() from None
        if root is None:
            self.report(1, "the file is empty; expected a mapping with keys "
                           + ", ".join(TOP_KEYS))
            raise self.fail()
        if not isinstance(root, MappingNode):
            self.report(root, "the top level must be a mapping with keys "
                              f"{', '.join(TOP_KEYS)}; got {_describe(root)}")
            raise self.fail()
        result = self.constitution(root)
        if self.problems or result is None:
            raise self.fail()
        return result

    # ---- structure ----------------------------------------------------------------------
    def fields(self, node: MappingNode, where: str, allowed: tuple[str, ...],
               required: tuple[str, ...]) -> dict[str, tuple[Node, Node]]:
        """Known keys of a mapping as name -> (key node, value node); reports the rest."""
        out: dict[str, tuple[Node, Node]] = {}
        suggested: set[str] = set()
        for key, value in node.value:
            if not _is(key, "str"):
                self.report(key, f"keys must be strings, got {_describe(key)} {where}")
                continue
            name = key.value
            if name in out:
                self.report(key, f"duplicate key {name!r} {where} "
                                 f"(first at line {_line(out[name][0])})")
                continue
            if name not in allowed:
                guess = _did_you_mean(name, allowed)
                if guess:
                    suggested.add(guess)
                    self.report(key, f"unknown key {name!r} {where}; did you mean {guess!r}?")
                else:
                    self.report(key, f"unknown key {name!r} {where}; expected one of: "
                                     + ", ".join(allowed))
                continue
            out[name] = (key, value)
        for name in required:
            # A typo'd key has been reported already; "missing" as well would say it twice.
            if name not in out and name not in suggested:
                self.report(node, f"missing required key {name!r} {where}")
        return out

    def constitution(self, root: MappingNode) -> Constitution | None:
        f = self.fields(root, "at the top level", TOP_KEYS, TOP_KEYS)
        name = self.string(f.get("name"), "name")
        version = self.version(f.get("version"))
        description = self.string(f.get("description"), "description")
        sections = {s: self.section(f.get(s), s) for s in SECTIONS}
        if None in (name, version, description) or None in sections.values():
            return None
        assert name is not None and version is not None and description is not None
        return Constitution(name, version, description, sections["harmful"] or (),
                            sections["harmless"] or ())

    def section(self, entry: tuple[Node, Node] | None, section: str) -> tuple[Category, ...] | None:
        if entry is None:
            return None
        key, node = entry
        if _is(node, "null") or (isinstance(node, SequenceNode) and not node.value):
            self.report(key, f"{section} lists no categories; give at least one")
            return None
        if not isinstance(node, SequenceNode):
            self.report(node, f"{section} must be a list of categories, got {_describe(node)}")
            return None
        cats = [self.category(item, section, i) for i, item in enumerate(node.value, 1)]
        if any(c is None for c in cats):
            return None
        return tuple(c for c in cats if c is not None)

    def category(self, node: Node, section: str, index: int) -> Category | None:
        if not isinstance(node, MappingNode):
            self.report(node, f"{section} category #{index} must be a mapping with keys "
                              f"{', '.join(CATEGORY_REQUIRED)}; got {_describe(node)}")
            return None
        # Name the category by its id in messages when it has a usable one.
        raw_id = next((v.value for k, v in node.value
                       if _is(k, "str") and k.value == "id" and _is(v, "str") and v.value), None)
        label = f"{section} category {raw_id!r}" if raw_id else f"{section} category #{index}"
        where = f"in {label}"
        f = self.fields(node, where, CATEGORY_KEYS, CATEGORY_REQUIRED)
        cid = self.identifier(f.get("id"), label)
        title = self.string(f.get("title"), f"title of {label}")
        description = self.string(f.get("description"), f"description of {label}")
        examples = self.examples(f.get("examples"), label)
        notes = self.optional_string(f.get("notes"), f"notes of {label}")
        world = self.world(f.get("world"), section, label)
        if None in (cid, title, description, examples, world):
            return None
        assert cid and title and description and examples is not None and world is not None
        return Category(cid, title, description, examples, notes, world)

    # ---- values -------------------------------------------------------------------------
    def string(self, entry: tuple[Node, Node] | None, what: str) -> str | None:
        """A required non-empty string; reports and returns None otherwise."""
        if entry is None:
            return None
        key, node = entry
        if _is(node, "null"):
            self.report(key, f"{what} is empty")
            return None
        if not _is(node, "str"):
            hint = f" (put it in quotes: \"{node.value}\")" if isinstance(node, ScalarNode) else ""
            self.report(node, f"{what} must be a string, got {_describe(node)}{hint}")
            return None
        text = node.value.strip()
        if not text:
            self.report(node, f"{what} is empty")
            return None
        return text

    def optional_string(self, entry: tuple[Node, Node] | None, what: str) -> str | None:
        if entry is None or _is(entry[1], "null") or (_is(entry[1], "str")
                                                      and not entry[1].value.strip()):
            return None
        return self.string(entry, what)

    def version(self, entry: tuple[Node, Node] | None) -> str | None:
        if entry is None:
            return None
        key, node = entry
        # The raw text, so that an unquoted 1.10 stays "1.10" rather than becoming 1.1.
        if isinstance(node, ScalarNode) and node.tag.removeprefix(_TAG) in ("str", "int",
                                                                            "float"):
            if node.value.strip():
                return node.value.strip()
        if _is(node, "null") or (_is(node, "str") and not node.value.strip()):
            self.report(key, "version is empty")
        else:
            self.report(node, f"version must be a string such as \"1.0\", got {_describe(node)}")
        return None

    def identifier(self, entry: tuple[Node, Node] | None, label: str) -> str | None:
        cid = self.string(entry, f"id of {label}")
        if cid is None or entry is None:
            return None
        node = entry[1]
        if not SLUG.fullmatch(cid):
            slug = "-".join(re.findall(r"[a-z0-9]+", cid.lower())) or "my-category"
            self.report(node, f"bad id {cid!r}: use a lowercase slug of letters, digits, '-' "
                              f"and '_', starting with a letter (e.g. {slug!r})")
            return None
        if cid in self.ids:
            self.report(node, f"duplicate category id {cid!r} "
                              f"(first defined at line {self.ids[cid]})")
            return None
        self.ids[cid] = _line(node)
        return cid

    def examples(self, entry: tuple[Node, Node] | None, label: str) -> tuple[str, ...] | None:
        if entry is None:
            return None
        key, node = entry
        if _is(node, "null") or (isinstance(node, SequenceNode) and not node.value):
            self.report(key, f"examples of {label} is empty; give at least one example request")
            return None
        if not isinstance(node, SequenceNode):
            self.report(node, f"examples of {label} must be a list of strings, "
                              f"got {_describe(node)}")
            return None
        out: list[str] = []
        ok = True
        for item in node.value:
            text = self.string((item, item), f"an example of {label}")
            if text is None:
                ok = False
            elif text in out:
                self.report(item, f"duplicate example in {label}: {text!r}")
                ok = False
            else:
                out.append(text)
        return tuple(out) if ok else None

    def world(self, entry: tuple[Node, Node] | None, section: str,
              label: str) -> dict[str, str] | None:
        if entry is None or _is(entry[1], "null"):
            return {}
        node = entry[1]
        if not isinstance(node, MappingNode):
            self.report(node, f"world of {label} must be a mapping such as "
                              f"{{hazard_category: toxins}}; got {_describe(node)}")
            return None
        f = self.fields(node, f"in world of {label}", tuple(WORLD_KEYS), ())
        out: dict[str, str] = {}
        ok = len(f) == len(node.value)  # unknown keys were reported by fields()
        for name, (key, value) in f.items():
            if section not in WORLD_KEYS[name]:
                self.report(key, f"world.{name} belongs in a {' or '.join(WORLD_KEYS[name])} "
                                 f"category, not in {label}")
                ok = False
                continue
            ref = self.string((key, value), f"world.{name} of {label}")
            if ref is None:
                ok = False
                continue
            options = self.known.get(name, ())
            if ref not in options:
                guess = _did_you_mean(ref, options)
                hint = f"; did you mean {guess!r}?" if guess else ""
                self.report(value, f"unknown {_WORLD_LABELS[name]} {ref!r} in {label}{hint} "
                                   f"(known: {', '.join(options)})")
                ok = False
                continue
            out[name] = ref
        return out if ok else None


def _syntax_line(e: yaml.MarkedYAMLError) -> int:
    mark = e.problem_mark or e.context_mark
    return mark.line + 1 if mark is not None else 1


def _syntax_message(e: yaml.MarkedYAMLError) -> str:
    message = f"YAML syntax error: {e.problem or e.context or 'cannot parse'}"
    if e.problem and e.context and e.context_mark is not None:
        message += f" ({e.context} at line {e.context_mark.line + 1})"
    return message
