"""Constitutional classifiers: input and streaming output classifiers, calibration, metrics.

    >>> from swisscheese.classifiers import get_classifier, list_classifiers
    >>> list_classifiers()
    ['ngram', 'ngram-stream']

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
from swisscheese.classifiers.metrics import auprc, fpr_at_threshold, tpr_at_threshold
from swisscheese.classifiers.ngram import NGramClassifier, NGramConfig, normalize_text
from swisscheese.classifiers.registry import (
    CLASSIFIERS,
    get_classifier,
    list_classifiers,
    load_classifier,
    register,
)
from swisscheese.classifiers.streaming import NGramStreamingClassifier, NGramStreamState

__all__ = [
    "CLASSIFIERS", "Classifier", "ClassifierError", "Conversation", "NGramClassifier",
    "NGramConfig", "NGramStreamState", "NGramStreamingClassifier", "NotFittedError",
    "StreamGuard", "StreamState", "StreamingClassifier", "auprc", "fpr_at_threshold",
    "get_classifier", "list_classifiers", "load_classifier", "normalize_text", "register",
    "render_conversation", "threshold_for_fpr", "tpr_at_threshold",
]
