"""Automatic red-teaming of text-to-image models (ART) on a synthetic visual world."""
