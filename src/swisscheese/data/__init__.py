"""Synthetic data from a constitution, and the converters (augmentations) that disguise it."""
