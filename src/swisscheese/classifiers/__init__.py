"""Constitutional classifiers: input and streaming output classifiers, calibration, metrics.

    >>> from swisscheese.classifiers import get_classifier, list_classifiers
    >>> list_classifiers()
    ['decoding', 'hf-finetune', 'ngram', 'ngram-stream', 'probe', 'probe-stream', \
'transformer', 'transformer-stream']

Importing this package imports every backend module, which registers it in CLASSIFIERS.
"""

from __future__ import annotations

from swisscheese.classifiers.base import (
    Classifier,
    ClassifierError,
    Conversation,
    NotFittedError,
    StreamGuard,
    StreamingClassifier,
    StreamState,
    render_conversation,
)
from swisscheese.classifiers.calibrate import threshold_for_fpr
from swisscheese.classifiers.decoding import DecodingClassifier, decode_runs
from swisscheese.classifiers.hfmodel import HFFinetuneClassifier, HFFinetuneConfig
from swisscheese.classifiers.metrics import auprc, fpr_at_threshold, tpr_at_threshold
from swisscheese.classifiers.ngram import NGramClassifier, NGramConfig, normalize_text
from swisscheese.classifiers.probe import (
    ProbeClassifier,
    ProbeConfig,
    ProbeStreamingClassifier,
    ProbeStreamState,
)
from swisscheese.classifiers.registry import (
    CLASSIFIERS,
    get_classifier,
    list_classifiers,
    load_classifier,
    register,
)
from swisscheese.classifiers.streaming import NGramStreamingClassifier, NGramStreamState
from swisscheese.classifiers.transformer import (
    TransformerClassifier,
    TransformerConfig,
    TransformerStreamingClassifier,
    TransformerStreamState,
)

__all__ = [
    "CLASSIFIERS", "Classifier", "ClassifierError", "Conversation", "DecodingClassifier",
    "HFFinetuneClassifier", "HFFinetuneConfig",
    "NGramClassifier",
    "NGramConfig", "NGramStreamState", "NGramStreamingClassifier", "NotFittedError",
    "ProbeClassifier", "ProbeConfig", "ProbeStreamState", "ProbeStreamingClassifier",
    "TransformerClassifier", "TransformerConfig", "TransformerStreamState",
    "TransformerStreamingClassifier",
    "StreamGuard", "StreamState", "StreamingClassifier", "auprc", "decode_runs", "fpr_at_threshold",
    "get_classifier", "list_classifiers", "load_classifier", "normalize_text", "register",
    "render_conversation", "threshold_for_fpr", "tpr_at_threshold",
]
