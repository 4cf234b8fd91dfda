"""The realworld recipe: an input guard bundle trained on the public datasets."""
