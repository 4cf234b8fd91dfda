"""The errors of the classifier estimators (a leaf module: every other one imports it)."""

from __future__ import annotations


class ClassifierError(RuntimeError):
    """A classifier could not be used: corrupt or mismatched saved files, not fitted.

    The message names the file and what is wrong with it.
    """


class NotFittedError(ClassifierError):
    """`predict_proba` or `save` was called before `fit` or `load`."""
