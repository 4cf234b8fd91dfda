"""Guard bundles: a constitution, its input and streaming output classifiers, calibrated
thresholds and the record of how they were trained, in one verified, versioned directory.

    >>> from swisscheese.bundles import load_bundle        # doctest: +SKIP
    >>> bundle = load_bundle("runs/classifier/bundle")     # doctest: +SKIP
"""

from __future__ import annotations

from swisscheese.bundles.build import build_bundle, calibrate
from swisscheese.bundles.bundle import (
    DEFAULT_STREAM_CHUNK,
    META_FILE,
    BundleError,
    GuardBundle,
    load_bundle,
    read_meta,
    save_bundle,
    stream_max_score,
)
from swisscheese.bundles.record import TrainingRecord, TrainingRecordError

__all__ = ["DEFAULT_STREAM_CHUNK", "META_FILE", "BundleError", "GuardBundle", "TrainingRecord",
           "TrainingRecordError", "build_bundle", "calibrate", "load_bundle", "read_meta",
           "save_bundle", "stream_max_score"]
