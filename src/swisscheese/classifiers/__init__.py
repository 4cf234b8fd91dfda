"""Constitutional classifiers as estimators: input and streaming output classifiers,
calibration, metrics, persistence and text normalisation. Nothing here knows where its data
comes from (the recipes do).

    >>> from swisscheese.classifiers import get_classifier, list_classifiers
    >>> list_classifiers()[:6]
    ['cascade', 'cascade-stream', 'decoding', 'decoding-stream', 'encoder', 'encoder-stream']

Backends live in `backends/` and are imported the first time the registry builds one, so
importing this package stays cheap.
"""

from __future__ import annotations

from swisscheese.classifiers.base import (
    Classifier,
    Conversation,
    StreamingClassifier,
    StreamState,
    render_conversation,
)
from swisscheese.classifiers.calibrate import threshold_for_fpr
from swisscheese.classifiers.configured import ConfiguredClassifier
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.metrics import auprc, fpr_at_threshold, tpr_at_threshold
from swisscheese.classifiers.registry import (
    CLASSIFIERS,
    get_classifier,
    list_classifiers,
    load_classifier,
    register,
)
from swisscheese.classifiers.streamguard import StreamGuard

__all__ = [
    "CLASSIFIERS", "Classifier", "ClassifierError", "ConfiguredClassifier", "Conversation",
    "NotFittedError", "StreamGuard", "StreamState", "StreamingClassifier", "auprc",
    "fpr_at_threshold", "get_classifier", "list_classifiers", "load_classifier", "register",
    "render_conversation", "threshold_for_fpr", "tpr_at_threshold",
]
