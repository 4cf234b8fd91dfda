"""The classifier registry: every backend by name, imported only when first used.

    >>> from swisscheese.classifiers.registry import CLASSIFIERS, get_classifier
    >>> CLASSIFIERS.names()[:3]
    ['decoding', 'hf-finetune', 'ngram']

A new backend is one class in one module under `backends/` (or in your own package) and one
line here, `CLASSIFIERS.add_lazy(name, "module:Class")`, or the `@CLASSIFIERS.register`
decorator on the class; the contract tests in tests/contract/test_classifiers.py then run
over it. Listing the names imports no backend module (numpy, torch and transformers stay
unimported until a backend is built).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swisscheese.classifiers.base import CategoryScorer, Classifier, StreamingClassifier
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.registry import Registry, UnknownPluginError

CLASSIFIERS: Registry[type[Classifier]] = Registry(
    "classifier", Classifier, entry_point_group="swisscheese.classifiers")
_B = "swisscheese.classifiers.backends"
for _name, _path in (
    ("ngram", f"{_B}.ngram:NGramClassifier"),
    ("ngram-stream", f"{_B}.ngram_stream:NGramStreamingClassifier"),
    ("transformer", f"{_B}.transformer:TransformerClassifier"),
    ("transformer-stream", f"{_B}.transformer:TransformerStreamingClassifier"),
    ("probe", f"{_B}.probe:ProbeClassifier"),
    ("probe-stream", f"{_B}.probe:ProbeStreamingClassifier"),
    ("hf-finetune", f"{_B}.hf_finetune:HFFinetuneClassifier"),
    ("decoding", f"{_B}.decoding:DecodingClassifier"),
    ("decoding-stream", f"{_B}.decoding_stream:DecodingStreamClassifier"),
    ("encoder", f"{_B}.encoder:EncoderClassifier"),
    ("encoder-stream", f"{_B}.encoder:EncoderExchangeClassifier"),
    ("cascade", f"{_B}.cascade:CascadeClassifier"),
    ("cascade-stream", f"{_B}.cascade:CascadeStreamingClassifier"),
    ("ensemble", f"{_B}.ensemble:EnsembleClassifier"),
    ("ensemble-stream", f"{_B}.ensemble:EnsembleStreamingClassifier"),
    ("llm-judge", f"{_B}.llm_judge:LLMJudgeClassifier"),
):
    CLASSIFIERS.add_lazy(_name, _path)

# Per-category scorers a guard bundle may hold beside its input classifier (see
# base.CategoryScorer); keyed by the input backend whose features they share.
CATEGORY_SCORERS: Registry[type[CategoryScorer]] = Registry(
    "category scorer", CategoryScorer, entry_point_group="swisscheese.category_scorers")
CATEGORY_SCORERS.add_lazy("encoder", f"{_B}.encoder:EncoderCategoryScorer")

register = CLASSIFIERS.register


def list_classifiers() -> list[str]:
    """The registered classifier names, sorted (imports no backend)."""
    return CLASSIFIERS.names()


def get_classifier(name: str, **kwargs: Any) -> Classifier:
    """A new, unfitted classifier by registered name; kwargs go to its constructor."""
    return CLASSIFIERS.create(name, **kwargs)  # type: ignore[no-any-return]


def is_streaming(name: str) -> bool:
    """Whether the backend `name` is a StreamingClassifier (imports it)."""
    return issubclass(CLASSIFIERS.get(name), StreamingClassifier)


def streaming_names() -> list[str]:
    """The registered streaming backends (imports every backend to ask)."""
    return [n for n in CLASSIFIERS.names() if is_streaming(n)]


def streaming_twin(backend: str, params: Mapping[str, Any] | None = None) -> str:
    """The registered streaming twin of `backend` ("ngram" -> "ngram-stream"), or KeyError
    listing the streaming backends. A wrapper backend that names the constructor option
    of the backend it wraps (`base_option`, e.g. 'decoding': "base") has its own twin
    ('decoding-stream') while it wraps its default base, and its base's twin when `params`
    (the wrapper's constructor options) name another."""
    cls = CLASSIFIERS.get(backend) if backend in CLASSIFIERS else None
    option = getattr(cls, "base_option", None)
    default = getattr(cls, "default_base", None)
    base = (params or {}).get(option, default) if option is not None else None
    if isinstance(base, str) and base not in (backend, default):
        return streaming_twin(base)
    for name in (f"{backend}-stream", backend):
        if name in CLASSIFIERS and is_streaming(name):
            return name
    if isinstance(base, str) and base != backend:
        return streaming_twin(base)
    raise UnknownPluginError(f"no streaming classifier for backend {backend!r}; pass an "
                             f"output backend, one of: {', '.join(streaming_names())}")


def load_classifier(directory: str | Path) -> Classifier:
    """Load a saved classifier of whichever registered class its config.json names."""
    path = Path(directory) / "config.json"
    try:
        name = json.loads(path.read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClassifierError(f"{path}: cannot read the classifier's 'name' ({e})") from e
    if not isinstance(name, str) or name not in CLASSIFIERS:
        raise ClassifierError(f"{path}: 'name' is {name!r}, not a registered classifier; "
                              f"registered: {', '.join(CLASSIFIERS.names())}")
    return CLASSIFIERS.get(name).load(directory)


def load_category_scorer(directory: str | Path) -> CategoryScorer:
    """Load a saved category scorer of whichever registered class its config.json names."""
    path = Path(directory) / "config.json"
    try:
        name = json.loads(path.read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClassifierError(f"{path}: cannot read the category scorer's 'name' ({e})") from e
    if not isinstance(name, str) or name not in CATEGORY_SCORERS:
        raise ClassifierError(f"{path}: 'name' is {name!r}, not a registered category "
                              f"scorer; registered: {', '.join(CATEGORY_SCORERS.names())}")
    return CATEGORY_SCORERS.get(name).load(directory)
